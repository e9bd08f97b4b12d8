// Byte-level BPE: the vocabulary and merge tables, and the encoding of one pre-token (bpe.h).
#include "tokenizer/bpe.h"

namespace qllm::detail {

BpeModel::BpeModel(std::span<const MergeRule> merges, const BpeOptions& options,
                   std::span<const std::string> bytes_of_id, std::span<const int32_t> byte_level_ids)
    : ignore_merges_(options.ignore_merges),
      unk_id_(options.unk_id),
      fuse_unk_(options.fuse_unk),
      drop_unknown_after_merging_(options.drop_unknown_after_merging) {
  byte_id_.fill(-1);
  id_of_bytes_.reserve(byte_level_ids.size());
  for (const int32_t id : byte_level_ids) {
    const std::string& bytes = bytes_of_id[id];
    if (bytes.size() == 1) byte_id_[static_cast<unsigned char>(bytes[0])] = id;
    id_of_bytes_.emplace(bytes, id);
  }
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const MergeRule& m = merges[rank];
    // A pair listed twice keeps its last rank, as HF's HashMap collect does.
    merges_[pair_key(m.left, m.right)] = {static_cast<int32_t>(rank), m.merged};
  }
}

std::optional<MergeTarget> BpeModel::find_merge(int32_t left, int32_t right) const {
  const auto it = merges_.find(pair_key(left, right));
  if (it == merges_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::encode(std::string_view bytes, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    if (const auto it = id_of_bytes_.find(bytes); it != id_of_bytes_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // One symbol per byte. A byte missing from the vocabulary becomes unk_token (consecutive ones fused
  // into one with fuse_unk) or, without unk_token, is dropped: HF's behaviour. llama.cpp drops it after
  // merging: until then it is a symbol (kNoToken) that merges with nothing.
  constexpr int32_t kNoToken = -1;
  std::vector<int32_t> symbols;
  symbols.reserve(bytes.size());
  bool previous_was_unk = false;
  for (const char byte : bytes) {
    const int32_t id = byte_id_[static_cast<unsigned char>(byte)];
    if (id >= 0) {
      symbols.push_back(id);
      previous_was_unk = false;
    } else if (unk_id_ >= 0) {
      if (!(fuse_unk_ && previous_was_unk)) symbols.push_back(unk_id_);
      previous_was_unk = true;
    } else if (drop_unknown_after_merging_) {
      symbols.push_back(kNoToken);
    }
  }
  merge_by_rank(symbols, [this](int32_t left, int32_t right) { return find_merge(left, right); });
  for (const int32_t symbol : symbols) {
    if (symbol != kNoToken) out.push_back(symbol);
  }
}

}  // namespace qllm::detail
