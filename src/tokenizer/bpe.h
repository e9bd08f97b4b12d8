// Byte-level BPE (HF `tokenizers` BPE model, and llama.cpp's for GGUF "gpt2" vocabularies): a pre-token's
// bytes start as one symbol each and the pair with the lowest merge rank is merged first (leftmost on
// ties) until no listed pair remains. Mirrors HF's Word::merge_all, stale queue entries included, so that
// ids agree exactly; llama.cpp's loop gives the same merges. The merge loop itself (merge_by_rank) also
// serves the SentencePiece-style BPE of GGUF "llama" vocabularies (spm.h), which ranks by score.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer_json.h"

namespace qllm::detail {

// What merging a pair of adjacent symbols gives, and its priority (the lowest rank merges first).
struct MergeTarget {
  int32_t rank = 0;
  int32_t merged = 0;
};

// Merges the adjacent pair of `symbols` with the lowest rank (leftmost on ties) until no pair merges.
// `find_merge(left, right)` returns the MergeTarget of a pair, or nullopt when it does not merge.
// Symbols form a doubly linked list over the initial positions; a merge keeps the left position and
// unlinks the right one. Queue entries whose pair no longer gives the same token are skipped (stale).
template <typename FindMerge>
void merge_by_rank(std::vector<int32_t>& symbols, FindMerge&& find_merge) {
  const int32_t n = static_cast<int32_t>(symbols.size());
  if (n < 2) return;
  std::vector<int32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t merged;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto push_pair = [&](int32_t left_pos) {
    if (const std::optional<MergeTarget> m = find_merge(symbols[left_pos], symbols[next[left_pos]])) {
      queue.push({m->rank, left_pos, m->merged});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    const int32_t right = next[top.pos];
    const std::optional<MergeTarget> current = find_merge(symbols[top.pos], symbols[right]);
    if (!current || current->merged != top.merged) continue;  // stale entry

    symbols[top.pos] = top.merged;
    alive[right] = false;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    if (prev[top.pos] >= 0) push_pair(prev[top.pos]);
    if (next[top.pos] >= 0) push_pair(top.pos);
  }
  size_t kept = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (alive[i]) symbols[kept++] = symbols[i];
  }
  symbols.resize(kept);
}

struct BpeOptions {
  bool ignore_merges = false;  // a pre-token that is itself a token is not merged
  int32_t unk_id = -1;         // for bytes without a token; -1: such bytes are dropped
  bool fuse_unk = false;       // consecutive unknown bytes give one unk_id
  // Without unk_id: a byte without a token is dropped before merging (HF), or only after it (llama.cpp),
  // so that it keeps its neighbours from merging.
  bool drop_unknown_after_merging = false;
};

class BpeModel {
 public:
  // The vocabulary comes decoded: `bytes_of_id[id]` is what token `id` stands for, and `byte_level_ids`
  // lists the tokens made only of byte-table characters (the others can never come out of byte-level
  // pre-tokenization). `merges` in rank order.
  BpeModel(std::span<const MergeRule> merges, const BpeOptions& options,
           std::span<const std::string> bytes_of_id, std::span<const int32_t> byte_level_ids);

  // Appends the ids of one pre-token, given as the raw bytes it covers.
  void encode(std::string_view bytes, std::vector<int32_t>& out) const;

 private:
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  std::optional<MergeTarget> find_merge(int32_t left, int32_t right) const;

  StringMap<int32_t> id_of_bytes_;      // vocabulary keyed by the bytes a token stands for
  std::array<int32_t, 256> byte_id_{};  // single-byte tokens; -1 when absent
  std::unordered_map<uint64_t, MergeTarget> merges_;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool drop_unknown_after_merging_ = false;
};

}  // namespace qllm::detail
