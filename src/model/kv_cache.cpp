#include "model/kv_cache.h"

#include <new>

#include "qllm/error.h"

namespace qllm {

KvCache::KvCache(int slots, int64_t layers, int64_t capacity, int64_t kv_dim)
    : slots_(slots), layers_(layers), capacity_(capacity), kv_dim_(kv_dim) {
  QLLM_CHECK(slots > 0 && layers > 0 && capacity > 0 && kv_dim > 0,
             "KV cache: slots ({}), layers ({}), capacity ({}) and kv_dim ({}) must be positive", slots,
             layers, capacity, kv_dim);
  int64_t elements = slots;
  const bool overflow = __builtin_mul_overflow(elements, layers, &elements) ||
                        __builtin_mul_overflow(elements, capacity, &elements) ||
                        __builtin_mul_overflow(elements, kv_dim, &elements);
  QLLM_CHECK(!overflow, "KV cache: {} slots x {} layers x {} positions x {} values is too large", slots,
             layers, capacity, kv_dim);
  try {
    keys_.assign(static_cast<size_t>(elements), 0.0f);
    values_.assign(static_cast<size_t>(elements), 0.0f);
  } catch (const std::bad_alloc&) {
    const double gib = 2.0 * sizeof(float) * static_cast<double>(elements) / (1 << 30);  // K and V
    fail(
        "KV cache: {} slots x {} positions x {} layers x {} values of K and V need {:.2f} GiB, more than the "
        "memory available (ask for fewer new tokens or a shorter prompt)",
        slots, capacity, layers, kv_dim, gib);
  }
  lengths_.assign(static_cast<size_t>(slots), 0);
}

void KvCache::set_length(int slot, int64_t length) {
  QLLM_CHECK(slot >= 0 && slot < slots_, "KV cache: slot {} out of range [0, {})", slot, slots_);
  QLLM_CHECK(length >= 0 && length <= capacity_, "KV cache: length {} outside [0, {}]", length, capacity_);
  lengths_[slot] = length;
}

}  // namespace qllm
