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

#include "quant/float_ops.h"

namespace qllm::int4 {

using namespace fops;

constexpr int kSymmetricZero = 8;  // symmetric q in [-8, 7] is stored as the nibble q + 8
constexpr int kMaxNibble = 15;

// Scale search candidates, in percent of the plain range: a coarse pass 100, 95, ... 30, then a fine pass
// of nine values around the coarse winner (best + 4 down to best - 4, capped at 100).
constexpr int kCoarseCandidates = 15;
constexpr int kFineCandidates = 9;
QLLM_HD int coarse_percent(int i) {
  return 100 - 5 * i;
}
QLLM_HD int fine_percent(int best_coarse, int i) {
  const int p = best_coarse + 4 - i;
  return p > 100 ? 100 : p;
}

// ---- per-group parameters
// ----------------------------------------------------------------------------------

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
QLLM_HD float group_absmax(GroupStats stats) {
  return fmax_(fabs_(stats.min), fabs_(stats.max));
}

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
    const int z = round_half_even(fmin_(div_rn(-lo, p.scale), 64.0f));
    p.zero = static_cast<uint8_t>(z < 0 ? 0 : (z > kMaxNibble ? kMaxNibble : z));
  }
  return p;
}

// Stored nibble for one weight: clamp(round(w / s) + z, 0, 15), with w / s computed as w * (1 / s).
// |w * (1/s)| stays below ~30 for every candidate scale, well inside round_half_even's range; the whole thing
// is an fmul, an fadd and integer ops. The zero point is added after rounding: folding it into the magic
// number would change how ties round.
QLLM_HD uint8_t quantize_value(float w, const GroupParams& p) {
  const int32_t q = round_half_even(mul_rn(w, p.inv_scale)) + p.zero;
  return static_cast<uint8_t>(q < 0 ? 0 : (q > kMaxNibble ? kMaxNibble : q));
}

// Reconstructed weight: (q - z) * s. Exact in float: a 5-bit integer times a 16-bit float.
QLLM_HD float dequantize_value(uint8_t nibble, float scale, int zero) {
  return mul_rn(static_cast<float>(static_cast<int>(nibble) - zero), scale);
}

// Min-offset reconstruction (GGUF Q4_1): q * s + m. The product is exact (a 4-bit integer times a 16-bit
// float), so the one rounding is the sum's, whatever the order or an FMA: ggml's value bit for bit.
QLLM_HD float dequantize_value_min(uint8_t nibble, float scale, float min) {
  return add_rn(mul_rn(static_cast<float>(nibble), scale), min);
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
