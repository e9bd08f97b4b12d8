// SentencePiece-style BPE of GGUF "llama" vocabularies (spm.h).
#include "tokenizer/spm.h"

#include <algorithm>
#include <functional>

namespace qllm::detail {

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, what SentencePiece writes for a space

size_t utf8_length(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

}  // namespace

SpmModel::SpmModel(std::span<const std::string> text_of_id, std::span<const float> scores,
                   const std::array<int32_t, 256>& byte_ids, int32_t unk_id)
    : text_of_id_(text_of_id.begin(), text_of_id.end()), byte_ids_(byte_ids), unk_id_(unk_id) {
  id_of_text_.reserve(text_of_id_.size());
  for (size_t id = 0; id < text_of_id_.size(); ++id)
    id_of_text_.emplace(text_of_id_[id], static_cast<int32_t>(id));
  // merge_by_rank merges the lowest rank first: equal scores share a rank, so that ties go to the leftmost
  // pair, as llama.cpp's queue orders them (score, then position).
  std::vector<float> distinct(scores.begin(), scores.end());
  std::sort(distinct.begin(), distinct.end(), std::greater<>());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  rank_of_id_.reserve(scores.size());
  for (const float score : scores) {
    const auto it = std::lower_bound(distinct.begin(), distinct.end(), score, std::greater<>());
    rank_of_id_.push_back(static_cast<int32_t>(it - distinct.begin()));
  }
}

std::optional<MergeTarget> SpmModel::find_merge(std::string_view left, std::string_view right,
                                                std::string& scratch) const {
  scratch.assign(left).append(right);
  const auto it = id_of_text_.find(scratch);
  if (it == id_of_text_.end()) return std::nullopt;
  return MergeTarget{rank_of_id_[it->second], it->second};
}

void SpmModel::encode(std::string_view text, bool space_prefix, std::vector<int32_t>& out) const {
  std::string escaped;
  escaped.reserve(text.size() + 8);
  if (space_prefix) escaped += kSpaceMark;
  for (const char c : text) {
    if (c == ' ') {
      escaped += kSpaceMark;
    } else {
      escaped += c;
    }
  }

  // One symbol per character: its token id, or -1 - i for the i-th character that is not a token.
  std::vector<std::string_view> unknown_chars;
  std::vector<int32_t> symbols;
  symbols.reserve(escaped.size());
  const std::string_view all(escaped);
  for (size_t pos = 0; pos < all.size();) {
    const std::string_view c = all.substr(pos, utf8_length(static_cast<unsigned char>(all[pos])));
    pos += c.size();
    if (const auto it = id_of_text_.find(c); it != id_of_text_.end()) {
      symbols.push_back(it->second);
    } else {
      symbols.push_back(-1 - static_cast<int32_t>(unknown_chars.size()));
      unknown_chars.push_back(c);
    }
  }
  auto text_of = [&](int32_t symbol) -> std::string_view {
    return symbol >= 0 ? std::string_view(text_of_id_[symbol]) : unknown_chars[-1 - symbol];
  };
  std::string scratch;
  merge_by_rank(symbols, [&](int32_t left, int32_t right) {
    return find_merge(text_of(left), text_of(right), scratch);
  });

  for (const int32_t symbol : symbols) {
    if (symbol >= 0) {
      out.push_back(symbol);
      continue;
    }
    const std::string_view c = text_of(symbol);
    const bool all_bytes = std::all_of(c.begin(), c.end(),
                                       [&](char b) { return byte_ids_[static_cast<unsigned char>(b)] >= 0; });
    if (all_bytes) {
      for (const char b : c) out.push_back(byte_ids_[static_cast<unsigned char>(b)]);
    } else if (unk_id_ >= 0) {
      out.push_back(unk_id_);
    }
  }
}

}  // namespace qllm::detail
