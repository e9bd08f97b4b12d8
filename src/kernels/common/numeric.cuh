// The device side of the 16-bit activation types (tags Bf16 and F16 of common/dispatch.h): conversions
// between raw 16-bit patterns and float, and packed pair arithmetic. Every kernel converts through these,
// so each conversion is written once. Include only from .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/common/dispatch.h"

namespace qllm::kernels {

template <typename T>
struct Numeric;
template <>
struct Numeric<Bf16> {
  using Scalar = __nv_bfloat16;
  using Pair = __nv_bfloat162;
};
template <>
struct Numeric<F16> {
  using Scalar = __half;
  using Pair = __half2;
};

// The value of a 16-bit pattern (the low 16 bits of `bits16`), exactly.
template <typename T>
__device__ __forceinline__ float to_float(uint32_t bits16) {
  if constexpr (T::kIsBf16) {
    return __uint_as_float(bits16 << 16);
  } else {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
  }
}

// A float rounded to the 16-bit type (nearest, ties to even), as its bit pattern.
template <typename T>
__device__ __forceinline__ uint16_t from_float(float v) {
  if constexpr (T::kIsBf16) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
  } else {
    return __half_as_ushort(__float2half_rn(v));
  }
}

// Two floats rounded into one 32-bit pair: `lo` in bits 0-15, `hi` in bits 16-31.
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  return from_float<T>(lo) | (static_cast<uint32_t>(from_float<T>(hi)) << 16);
}

// A 32-bit register viewed as a pair of the 16-bit type, and back.
template <typename T>
__device__ __forceinline__ typename Numeric<T>::Pair as_pair(uint32_t bits) {
  return *reinterpret_cast<typename Numeric<T>::Pair*>(&bits);
}
template <typename T>
__device__ __forceinline__ uint32_t pair_bits(typename Numeric<T>::Pair pair) {
  return *reinterpret_cast<uint32_t*>(&pair);
}

// Packed pair subtraction and multiplication (one instruction each), rounded to the 16-bit type.
template <typename T>
__device__ __forceinline__ uint32_t sub2(uint32_t a, uint32_t b) {
  return pair_bits<T>(__hsub2(as_pair<T>(a), as_pair<T>(b)));
}
template <typename T>
__device__ __forceinline__ uint32_t mul2(uint32_t a, uint32_t b) {
  return pair_bits<T>(__hmul2(as_pair<T>(a), as_pair<T>(b)));
}
// Packed a * b + c, one rounding of the exact result.
template <typename T>
__device__ __forceinline__ uint32_t fma2(uint32_t a, uint32_t b, uint32_t c) {
  return pair_bits<T>(__hfma2(as_pair<T>(a), as_pair<T>(b), as_pair<T>(c)));
}

// The 8 elements of a 16-byte vector, in memory order.
template <typename T>
__device__ __forceinline__ void unpack8(const uint4& v, float (&out)[8]) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = to_float<T>(words[i] & 0xffffu);
    out[2 * i + 1] = to_float<T>(words[i] >> 16);
  }
}

template <typename T>
__device__ __forceinline__ uint4 pack8(const float (&in)[8]) {
  return make_uint4(pack2<T>(in[0], in[1]), pack2<T>(in[2], in[3]), pack2<T>(in[4], in[5]),
                    pack2<T>(in[6], in[7]));
}

}  // namespace qllm::kernels
