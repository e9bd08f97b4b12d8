#include "tokenizer/bpe.h"

#include <queue>

namespace qllm::detail {

BpeModel::BpeModel(const TokenizerSpec& spec, std::span<const std::string> bytes_of_id,
                   std::span<const int32_t> byte_level_ids)
    : ignore_merges_(spec.ignore_merges), unk_id_(spec.unk_id), fuse_unk_(spec.fuse_unk) {
  byte_id_.fill(-1);
  id_of_bytes_.reserve(byte_level_ids.size());
  for (const int32_t id : byte_level_ids) {
    const std::string& bytes = bytes_of_id[id];
    if (bytes.size() == 1) byte_id_[static_cast<unsigned char>(bytes[0])] = id;
    id_of_bytes_.emplace(bytes, id);
  }
  merges_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const MergeRule& m = spec.merges[rank];
    // A pair listed twice keeps its last rank, as HF's HashMap collect does.
    merges_[pair_key(m.left, m.right)] = {static_cast<int32_t>(rank), m.merged};
  }
}

const BpeModel::MergeTarget* BpeModel::find_merge(int32_t left, int32_t right) const {
  const auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::encode(std::string_view bytes, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    if (const auto it = id_of_bytes_.find(bytes); it != id_of_bytes_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // One symbol per byte. A byte missing from the vocabulary becomes unk_token (consecutive ones fused
  // into one with fuse_unk) or, without unk_token, is dropped: HF's behaviour.
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
    }
  }
  merge_symbols(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

// Symbols form a doubly linked list over the initial positions; a merge keeps the left position and
// unlinks the right one. Queue entries whose pair no longer produces the same token are skipped.
void BpeModel::merge_symbols(std::vector<int32_t>& ids) const {
  const int32_t n = static_cast<int32_t>(ids.size());
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
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (const MergeTarget* m = find_merge(ids[i], ids[i + 1])) queue.push({m->rank, i, m->merged});
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    const int32_t right = next[top.pos];
    const MergeTarget* current = find_merge(ids[top.pos], ids[right]);
    if (current == nullptr || current->merged != top.merged) continue;  // stale entry

    ids[top.pos] = top.merged;
    alive[right] = false;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;

    if (prev[top.pos] >= 0) {
      if (const MergeTarget* m = find_merge(ids[prev[top.pos]], ids[top.pos])) {
        queue.push({m->rank, prev[top.pos], m->merged});
      }
    }
    if (next[top.pos] >= 0) {
      if (const MergeTarget* m = find_merge(ids[top.pos], ids[next[top.pos]])) {
        queue.push({m->rank, top.pos, m->merged});
      }
    }
  }
  size_t kept = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (alive[i]) ids[kept++] = ids[i];
  }
  ids.resize(kept);
}

}  // namespace qllm::detail
