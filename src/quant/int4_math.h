// The INT4 quantization arithmetic, written once for the CPU reference and the CUDA kernels.
//
// Bit-identical results on both sides rest on three rules:
//  1. every float operation is a single IEEE operation rounded to nearest even (explicit __f*_rn
//     intrinsics on the device, -ffp-contract=off on the host: no fused multiply-add anywhere);
//  2. float -> int rounding is round-half-to-even on both sides;
//  3. search errors are summed as 24-bit fixed-point integers in 64-bit accumulators, so the sum does not
//     depend on the order in which the GPU's threads (or the CPU's vector lanes) add them.
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

namespace qllm::int4 {

constexpr int kSymmetricZero = 8;  // symmetric q in [-8, 7] is stored as the nibble q + 8
constexpr int kMaxNibble = 15;

// Scale search candidates, in percent of the plain range: a coarse pass 100, 95, ... 30, then a fine pass
// of nine values around the coarse winner (best + 4 down to best - 4, capped at 100).
constexpr int kCoarseCandidates = 15;
constexpr int kFineCandidates = 9;
QLLM_HD int coarse_percent(int i) { return 100 - 5 * i; }
QLLM_HD int fine_percent(int best_coarse, int i) {
  const int p = best_coarse + 4 - i;
  return p > 100 ? 100 : p;
}

// ---- single IEEE operations (rule 1) -------------------------------------------------------------------
#if defined(__CUDA_ARCH__)
QLLM_HD float mul_rn(float a, float b) { return __fmul_rn(a, b); }
QLLM_HD float div_rn(float a, float b) { return __fdiv_rn(a, b); }
QLLM_HD float sub_rn(float a, float b) { return __fsub_rn(a, b); }
QLLM_HD float add_rn(float a, float b) { return __fadd_rn(a, b); }
QLLM_HD int32_t float_bits(float x) { return __float_as_int(x); }
QLLM_HD uint32_t round_to_u32(float x) { return __float2uint_rn(x); }
QLLM_HD float fabs_(float x) { return fabsf(x); }
QLLM_HD float fmin_(float a, float b) { return fminf(a, b); }
QLLM_HD float fmax_(float a, float b) { return fmaxf(a, b); }
QLLM_HD uint16_t float_to_scale_bits(float s, bool bf16) {
  return bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(s)) : __half_as_ushort(__float2half_rn(s));
}
QLLM_HD float scale_bits_to_float(uint16_t bits, bool bf16) {
  return bf16 ? __bfloat162float(__ushort_as_bfloat16(bits)) : __half2float(__ushort_as_half(bits));
}
#else
inline float mul_rn(float a, float b) { return a * b; }
inline float div_rn(float a, float b) { return a / b; }
inline float sub_rn(float a, float b) { return a - b; }
inline float add_rn(float a, float b) { return a + b; }
inline int32_t float_bits(float x) { return std::bit_cast<int32_t>(x); }
// Round half to even without a libm call (std::nearbyint is not inlined on baseline x86-64): adding and
// subtracting 1.5 * 2^23 rounds to an integer in the FPU's default mode, exact for |x| < 2^22.
inline uint32_t round_to_u32(float x) {  // 0 <= x <= 2^24
  return static_cast<uint32_t>(static_cast<int32_t>((x + 12582912.0f) - 12582912.0f));
}
// Plain comparisons (inputs are checked finite before they get here); std::fmin/fmax are library calls.
inline float fabs_(float x) { return std::fabs(x); }
inline float fmin_(float a, float b) { return b < a ? b : a; }
inline float fmax_(float a, float b) { return a < b ? b : a; }
inline uint16_t float_to_scale_bits(float s, bool bf16) {
  return bf16 ? float_to_bf16_bits(s) : float_to_half_bits(s);
}
inline float scale_bits_to_float(uint16_t bits, bool bf16) {
  return bf16 ? bf16_bits_to_float(bits) : half_bits_to_float(bits);
}
#endif

// ---- per-group parameters ----------------------------------------------------------------------------------

constexpr float kRoundingMagic = 12582912.0f;  // 1.5 * 2^23: x + magic has round(x) in its low mantissa bits
constexpr int32_t kRoundingMagicBits = 0x4B400000;

// Range of one group. Min/max are order-independent, so any reduction order gives the same stats.
struct GroupStats {
  float min;
  float max;
};

// The scale and zero point of a group, plus what quantizing and the search need.
struct GroupParams {
  uint16_t scale_bits;  // stored scale (fp16 or bf16 bits)
  uint8_t zero;         // stored zero point (8 for symmetric)
  float scale;          // the stored scale as a float
  float inv_scale;      // 1 / scale (0 when the scale is 0): quantizing multiplies by it
};

// Largest magnitude of the group. max(|min|, |max|) rather than max(-min, max): an all-zero group must give
// +0, whatever sign of zero the min/max reductions (which differ between CPU and GPU) kept.
QLLM_HD float group_absmax(GroupStats stats) { return fmax_(fabs_(stats.min), fabs_(stats.max)); }

// Parameters for clipping the group's range to `percent` of the plain range.
// Symmetric: s = absmax * p / 700, z = 8. Asymmetric: the range is widened to contain 0 (so that z fits in
// [0, 15] and zero stays exact), both ends are scaled by p / 100, s = (hi - lo) / 15, z = round(-lo / s).
QLLM_HD GroupParams group_params(GroupStats stats, int percent, bool zero_point, bool bf16_scale) {
  GroupParams p;
  float scale;
  if (!zero_point) {
    scale = div_rn(mul_rn(group_absmax(stats), static_cast<float>(percent)), 700.0f);
  } else {
    const float lo = div_rn(mul_rn(fmin_(stats.min, 0.0f), static_cast<float>(percent)), 100.0f);
    const float hi = div_rn(mul_rn(fmax_(stats.max, 0.0f), static_cast<float>(percent)), 100.0f);
    scale = div_rn(sub_rn(hi, lo), 15.0f);
  }
  p.scale_bits = float_to_scale_bits(scale, bf16_scale);
  p.scale = scale_bits_to_float(p.scale_bits, bf16_scale);
  const bool usable = p.scale > 0.0f && p.scale <= 3.0e38f;  // 0 (all-zero or underflowed) or inf: no inverse
  p.inv_scale = usable ? div_rn(1.0f, p.scale) : 0.0f;
  if (!zero_point) {
    p.zero = kSymmetricZero;
  } else if (!usable) {
    p.zero = 0;
  } else {
    const float lo = div_rn(mul_rn(fmin_(stats.min, 0.0f), static_cast<float>(percent)), 100.0f);
    const int z = float_bits(add_rn(fmin_(div_rn(-lo, p.scale), 64.0f), kRoundingMagic)) - kRoundingMagicBits;
    p.zero = static_cast<uint8_t>(z < 0 ? 0 : (z > kMaxNibble ? kMaxNibble : z));
  }
  return p;
}

// Stored nibble for one weight: clamp(round(w / s) + z, 0, 15), with w / s computed as w * (1 / s).
// Rounding: adding 1.5 * 2^23 leaves round-half-even(x) in the low bits of the float (|x| < 2^22, which holds:
// |w * (1/s)| stays below ~30 for every candidate scale), so the whole thing is an fmul, an fadd and integer
// ops, on both sides. The zero point is added after rounding: folding it into the magic would change ties.
QLLM_HD uint8_t quantize_value(float w, const GroupParams& p) {
  const int32_t q = float_bits(add_rn(mul_rn(w, p.inv_scale), kRoundingMagic)) - kRoundingMagicBits + p.zero;
  return static_cast<uint8_t>(q < 0 ? 0 : (q > kMaxNibble ? kMaxNibble : q));
}

// Reconstructed weight: (q - z) * s. Exact in float: a 5-bit integer times a 16-bit float.
QLLM_HD float dequantize_value(uint8_t nibble, float scale, int zero) {
  return mul_rn(static_cast<float>(static_cast<int>(nibble) - zero), scale);
}

// ---- search error in fixed point (rule 3) ---------------------------------------------------------------

// A power of two that maps every reconstruction error of the group below 1.0: errors are at most about
// 2 * absmax (asymmetric clipping of a one-sided group), so divide by 4 * 2^floor(log2(absmax)).
QLLM_HD float error_normalizer(GroupStats stats) {
  const float absmax = group_absmax(stats);
  uint32_t bits;
#if defined(__CUDA_ARCH__)
  bits = __float_as_uint(absmax);
#else
  bits = std::bit_cast<uint32_t>(absmax);
#endif
  int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 2;  // floor(log2(absmax)) + 2 for normals
  int biased = 127 - exponent;
  biased = biased < 1 ? 1 : (biased > 254 ? 254 : biased);  // subnormal absmax: the scale underflows anyway
  const uint32_t norm_bits = static_cast<uint32_t>(biased) << 23;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(norm_bits);
#else
  return std::bit_cast<float>(norm_bits);
#endif
}

// One weight's contribution to the search objective: |e| or e^2 of the normalised error (in [0, 1]) in
// 24-bit fixed point. Summed in 64 bits this is exact for any group of fewer than 2^39 weights.
QLLM_HD uint32_t error_fixed_point(float w, const GroupParams& p, float normalizer, bool squared) {
  const float reconstructed = dequantize_value(quantize_value(w, p), p.scale, p.zero);
  float e = mul_rn(fabs_(sub_rn(w, reconstructed)), normalizer);
  e = fmin_(e, 1.0f);
  if (squared) e = mul_rn(e, e);
  return round_to_u32(mul_rn(e, 16777216.0f));
}

}  // namespace qllm::int4
