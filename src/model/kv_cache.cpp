#include "model/kv_cache.h"

#include "qllm/error.h"

namespace qllm {

KvCache::KvCache(int slots, int64_t layers, int64_t capacity, int64_t kv_dim)
    : slots_(slots), layers_(layers), capacity_(capacity), kv_dim_(kv_dim) {
  QLLM_CHECK(slots > 0 && layers > 0 && capacity > 0 && kv_dim > 0,
             "KV cache: slots ({}), layers ({}), capacity ({}) and kv_dim ({}) must be positive", slots,
             layers, capacity, kv_dim);
  const size_t elements = static_cast<size_t>(slots) * layers * capacity * kv_dim;
  keys_.assign(elements, 0.0f);
  values_.assign(elements, 0.0f);
  lengths_.assign(static_cast<size_t>(slots), 0);
}

void KvCache::set_length(int slot, int64_t length) {
  QLLM_CHECK(slot >= 0 && slot < slots_, "KV cache: slot {} out of range [0, {})", slot, slots_);
  QLLM_CHECK(length >= 0 && length <= capacity_, "KV cache: length {} outside [0, {}]", length, capacity_);
  lengths_[slot] = length;
}

}  // namespace qllm
