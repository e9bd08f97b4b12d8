#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "core/utf8.h"

namespace qllm::detail {

namespace {

bool is_continuation(char byte) {
  return (static_cast<unsigned char>(byte) & 0xC0) == 0x80;
}

// Start of the whitespace that ends text[floor, pos) (HF lstrip), or pos when there is none.
size_t whitespace_start_before(std::string_view text, size_t pos, size_t floor) {
  while (pos > floor) {
    size_t start = pos - 1;
    while (start > floor && is_continuation(text[start])) --start;
    size_t cursor = start;
    if (!utf8::is_white_space(utf8::next_code_point(text, cursor))) break;
    pos = start;
  }
  return pos;
}

// End of the whitespace that starts at pos (HF rstrip), or pos when there is none.
size_t whitespace_end_after(std::string_view text, size_t pos) {
  while (pos < text.size()) {
    size_t cursor = pos;
    if (!utf8::is_white_space(utf8::next_code_point(text, cursor))) break;
    pos = cursor;
  }
  return pos;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens, AddedTokenOrder order)
    : tokens_(tokens), order_(order) {
  if (order_ == AddedTokenOrder::LongestTokenFirst) {
    // std::sort, not a stable sort, as llama.cpp sorts its special token cache: tokens of equal length
    // that overlap in a text then match in the order llama.cpp (with the same standard library) uses.
    longest_first_.resize(tokens_.size());
    for (uint32_t i = 0; i < tokens_.size(); ++i) longest_first_[i] = i;
    std::sort(longest_first_.begin(), longest_first_.end(),
              [&](uint32_t a, uint32_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
    return;
  }
  for (uint32_t i = 0; i < tokens_.size(); ++i) {
    Pass& pass = tokens_[i].normalized ? normalized_pass_ : raw_pass_;
    pass.by_first_byte[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
    pass.empty = false;
  }
  for (Pass* pass : {&raw_pass_, &normalized_pass_}) {
    for (auto& candidates : pass->by_first_byte) {
      std::stable_sort(candidates.begin(), candidates.end(), [&](uint32_t a, uint32_t b) {
        return tokens_[a].content.size() > tokens_[b].content.size();
      });
    }
  }
}

void AddedTokenMatcher::split_pass(const Pass& pass, std::string_view text, std::vector<Segment>& out) const {
  size_t covered = 0;  // text before this offset is already in `out`
  size_t pos = 0;
  while (pos < text.size()) {
    const auto& candidates = pass.by_first_byte[static_cast<unsigned char>(text[pos])];
    const auto match = std::find_if(candidates.begin(), candidates.end(), [&](uint32_t i) {
      return text.compare(pos, tokens_[i].content.size(), tokens_[i].content) == 0;
    });
    if (match == candidates.end()) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[*match];
    const size_t start = token.lstrip ? whitespace_start_before(text, pos, covered) : pos;
    size_t end = pos + token.content.size();
    if (token.rstrip) end = whitespace_end_after(text, end);
    if (start > covered) out.push_back({text.substr(covered, start - covered), -1});
    out.push_back({text.substr(start, end - start), token.id});
    covered = pos = end;
  }
  if (covered < text.size()) out.push_back({text.substr(covered), -1});
}

std::vector<Segment> AddedTokenMatcher::split_longest_token_first(std::string_view text) const {
  std::vector<Segment> segments = {{text, -1}};
  std::vector<Segment> next;
  for (const uint32_t index : longest_first_) {
    const std::string& content = tokens_[index].content;
    next.clear();
    for (const Segment& segment : segments) {
      if (segment.id >= 0) {
        next.push_back(segment);
        continue;
      }
      size_t covered = 0;
      for (size_t pos = segment.text.find(content); pos != std::string_view::npos;
           pos = segment.text.find(content, covered)) {
        if (pos > covered) next.push_back({segment.text.substr(covered, pos - covered), -1});
        next.push_back({segment.text.substr(pos, content.size()), tokens_[index].id});
        covered = pos + content.size();
      }
      if (covered < segment.text.size()) next.push_back({segment.text.substr(covered), -1});
    }
    segments.swap(next);
  }
  return segments;
}

std::vector<Segment> AddedTokenMatcher::split(std::string_view text) const {
  if (order_ == AddedTokenOrder::LongestTokenFirst) return split_longest_token_first(text);
  std::vector<Segment> first;
  if (raw_pass_.empty) {
    first.push_back({text, -1});
  } else {
    split_pass(raw_pass_, text, first);
  }
  if (normalized_pass_.empty) return first;
  std::vector<Segment> second;
  for (const Segment& segment : first) {
    if (segment.id >= 0) {
      second.push_back(segment);
    } else {
      split_pass(normalized_pass_, segment.text, second);
    }
  }
  return second;
}

}  // namespace qllm::detail
