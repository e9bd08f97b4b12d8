// Byte-level BPE (HF `tokenizers` BPE model): a pre-token's bytes start as one symbol each and the
// pair with the lowest merge rank is merged first (leftmost on ties) until no listed pair remains.
// Mirrors HF's Word::merge_all, stale queue entries included, so that ids agree exactly.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer_json.h"

namespace qllm::detail {

class BpeModel {
 public:
  // The vocabulary comes decoded: `bytes_of_id[id]` is what token `id` stands for, and `byte_level_ids`
  // lists the tokens made only of byte-table characters (the others can never come out of byte-level
  // pre-tokenization). From `spec`: the merges, ignore_merges, unk_token and fuse_unk (not its vocab).
  BpeModel(const TokenizerSpec& spec, std::span<const std::string> bytes_of_id,
           std::span<const int32_t> byte_level_ids);

  // Appends the ids of one pre-token, given as the raw bytes it covers.
  void encode(std::string_view bytes, std::vector<int32_t>& out) const;

 private:
  struct MergeTarget {
    int32_t rank = 0;
    int32_t merged = 0;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  const MergeTarget* find_merge(int32_t left, int32_t right) const;
  void merge_symbols(std::vector<int32_t>& ids) const;

  StringMap<int32_t> id_of_bytes_;      // vocabulary keyed by the bytes a token stands for
  std::array<int32_t, 256> byte_id_{};  // single-byte tokens; -1 when absent
  std::unordered_map<uint64_t, MergeTarget> merges_;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
};

}  // namespace qllm::detail
