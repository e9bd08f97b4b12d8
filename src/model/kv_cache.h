// The key/value cache of the CPU reference: for each sequence slot and layer, the rotated keys and the
// values of every position seen so far, in f32. Slots are independent sequences (a batch); a slot's
// length is the number of positions it holds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qllm {

class KvCache {
 public:
  KvCache() = default;
  // Storage for `slots` sequences of up to `capacity` positions: 2 x slots x layers x capacity x kv_dim
  // floats, allocated up front (the CLI sizes it to prompt + new tokens, not max_position_embeddings).
  KvCache(int slots, int64_t layers, int64_t capacity, int64_t kv_dim);

  int slots() const { return slots_; }
  int64_t capacity() const { return capacity_; }
  int64_t kv_dim() const { return kv_dim_; }
  size_t bytes() const { return (keys_.size() + values_.size()) * sizeof(float); }

  int64_t length(int slot) const { return lengths_.at(slot); }
  void set_length(int slot, int64_t length);  // forgets positions >= length (rewinds a sequence)

  // [kv_dim] = [kv_heads, head_dim] of one position.
  float* key(int slot, int64_t layer, int64_t position) {
    return keys_.data() + offset(slot, layer, position);
  }
  float* value(int slot, int64_t layer, int64_t position) {
    return values_.data() + offset(slot, layer, position);
  }
  const float* key(int slot, int64_t layer, int64_t position) const {
    return keys_.data() + offset(slot, layer, position);
  }
  const float* value(int slot, int64_t layer, int64_t position) const {
    return values_.data() + offset(slot, layer, position);
  }

 private:
  size_t offset(int slot, int64_t layer, int64_t position) const {
    return ((static_cast<size_t>(slot) * layers_ + layer) * capacity_ + position) * kv_dim_;
  }

  int slots_ = 0;
  int64_t layers_ = 0;
  int64_t capacity_ = 0;
  int64_t kv_dim_ = 0;
  std::vector<float> keys_;       // [slots, layers, capacity, kv_dim]
  std::vector<float> values_;     // [slots, layers, capacity, kv_dim]
  std::vector<int64_t> lengths_;  // [slots]
};

}  // namespace qllm
