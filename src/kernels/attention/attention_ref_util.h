// Host helpers of the attention references: reading and writing one element of a T buffer (f32, f16 or
// bf16) as float, with the rounding the GPU uses (round to nearest even, qllm/half.h), and the checks the
// references share.
#pragma once

#include <cstdint>
#include <cstring>

#include "qllm/dtype.h"
#include "qllm/half.h"

namespace qllm::attention_ref {

inline float load(const void* base, int64_t index, DType dtype) {
  if (dtype == DType::F32) return static_cast<const float*>(base)[index];
  const uint16_t bits = static_cast<const uint16_t*>(base)[index];
  return dtype == DType::BF16 ? bf16_bits_to_float(bits) : half_bits_to_float(bits);
}

inline void store(void* base, int64_t index, DType dtype, float value) {
  if (dtype == DType::F32) {
    static_cast<float*>(base)[index] = value;
    return;
  }
  static_cast<uint16_t*>(base)[index] =
      dtype == DType::BF16 ? float_to_bf16_bits(value) : float_to_half_bits(value);
}

// Copies one element without converting it (v is stored bit for bit).
inline void copy(const void* src, int64_t src_index, void* dst, int64_t dst_index, DType dtype) {
  const size_t size = dtype_size(dtype);
  std::memcpy(static_cast<char*>(dst) + dst_index * static_cast<int64_t>(size),
              static_cast<const char*>(src) + src_index * static_cast<int64_t>(size), size);
}

// Whether byte ranges [a, a + a_bytes) and [b, b + b_bytes) share a byte (an output must not alias an input).
inline bool ranges_overlap(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  const auto a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
  return a0 < b0 + static_cast<uintptr_t>(b_bytes) && b0 < a0 + static_cast<uintptr_t>(a_bytes);
}

inline bool is_power_of_two(int64_t v) {
  return v > 0 && (v & (v - 1)) == 0;
}

}  // namespace qllm::attention_ref
