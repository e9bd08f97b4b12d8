// Single IEEE float operations that round exactly alike on the CPU and the GPU, for the quantizers' shared
// arithmetic (int4_math.h, int8_math.h): explicit __f*_rn intrinsics on the device (no fused multiply-add),
// plain operators on the host (compiled with -ffp-contract=off).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define QLLM_HD __host__ __device__ __forceinline__
#else
#include <algorithm>
#include <cmath>
#define QLLM_HD inline
#endif

#include "qllm/half.h"

namespace qllm::fops {

#if defined(__CUDA_ARCH__)
QLLM_HD float mul_rn(float a, float b) {
  return __fmul_rn(a, b);
}
QLLM_HD float div_rn(float a, float b) {
  return __fdiv_rn(a, b);
}
QLLM_HD float sub_rn(float a, float b) {
  return __fsub_rn(a, b);
}
QLLM_HD float add_rn(float a, float b) {
  return __fadd_rn(a, b);
}
QLLM_HD int32_t float_bits(float x) {
  return __float_as_int(x);
}
QLLM_HD uint32_t round_to_u32(float x) {
  return __float2uint_rn(x);
}
QLLM_HD float fabs_(float x) {
  return fabsf(x);
}
QLLM_HD float fmin_(float a, float b) {
  return fminf(a, b);
}
QLLM_HD float fmax_(float a, float b) {
  return fmaxf(a, b);
}
QLLM_HD uint16_t float_to_scale_bits(float s, bool bf16) {
  return bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(s)) : __half_as_ushort(__float2half_rn(s));
}
QLLM_HD float scale_bits_to_float(uint16_t bits, bool bf16) {
  return bf16 ? __bfloat162float(__ushort_as_bfloat16(bits)) : __half2float(__ushort_as_half(bits));
}
#else
inline float mul_rn(float a, float b) {
  return a * b;
}
inline float div_rn(float a, float b) {
  return a / b;
}
inline float sub_rn(float a, float b) {
  return a - b;
}
inline float add_rn(float a, float b) {
  return a + b;
}
inline int32_t float_bits(float x) {
  return std::bit_cast<int32_t>(x);
}
// Round half to even without a libm call (std::nearbyint is not inlined on baseline x86-64). For
// 0 <= x < 2^23, x + 2^23 lies in [2^23, 2^24) where the float spacing is 1, so the addition rounds x to an
// integer in the FPU's default mode; from 2^23 on every float is already an integer.
inline uint32_t round_to_u32(float x) {  // 0 <= x < 2^32, like __float2uint_rn on the device
  if (x >= 8388608.0f) return static_cast<uint32_t>(x);
  return static_cast<uint32_t>((x + 8388608.0f) - 8388608.0f);
}
// Plain comparisons (inputs are checked finite before they get here); std::fmin/fmax are library calls.
inline float fabs_(float x) {
  return std::fabs(x);
}
inline float fmin_(float a, float b) {
  return b < a ? b : a;
}
inline float fmax_(float a, float b) {
  return a < b ? b : a;
}
inline uint16_t float_to_scale_bits(float s, bool bf16) {
  return bf16 ? float_to_bf16_bits(s) : float_to_half_bits(s);
}
inline float scale_bits_to_float(uint16_t bits, bool bf16) {
  return bf16 ? bf16_bits_to_float(bits) : half_bits_to_float(bits);
}
#endif

// Rounding to an integer: adding 1.5 * 2^23 leaves round-half-even(x) in the low mantissa bits (|x| < 2^22).
constexpr float kRoundingMagic = 12582912.0f;
constexpr int32_t kRoundingMagicBits = 0x4B400000;
QLLM_HD int32_t round_half_even(float x) {
  return float_bits(add_rn(x, kRoundingMagic)) - kRoundingMagicBits;
}

}  // namespace qllm::fops
