// 16-bit floating-point storage types for the host: IEEE fp16 and bfloat16, stored as raw bits.
// Conversions from float round to nearest, ties to even, exactly like CUDA's __float2half_rn and
// __float2bfloat16_rn, so CPU and GPU code produce the same bits (tested against a table of edge values).
#pragma once

#include <bit>
#include <cstdint>

namespace qllm {

struct Half {
  uint16_t bits = 0;
};
struct BFloat16 {
  uint16_t bits = 0;
};

inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {  // inf or NaN: keep the payload, force quiet NaN like CUDA does
    bits = sign | 0x7f800000u | (mantissa << 13) | (mantissa ? 0x00400000u : 0u);
  } else if (exponent != 0) {  // normal
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {  // signed zero
    bits = sign;
  } else {  // subnormal: normalise the mantissa
    int shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    bits = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

inline uint16_t float_to_half_bits(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf stays inf, every NaN becomes the canonical quiet NaN (as cuda_fp16)
    return abs > 0x7f800000u ? static_cast<uint16_t>(0x7fff) : static_cast<uint16_t>(sign | 0x7c00u);
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504: inf
  if (abs >= 0x38800000u) {                                              // normal half range
    const uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);          // round to nearest even
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
  }
  if (abs < 0x33000000u) return sign;  // below half the smallest subnormal: signed zero
  // Subnormal half: shift the full 24-bit mantissa into place and round to nearest even.
  const uint32_t exponent = abs >> 23;
  const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - exponent;  // 14..24
  const uint32_t halfway = 1u << (shift - 1);
  const uint32_t remainder = mantissa & ((1u << shift) - 1);
  uint32_t result = mantissa >> shift;
  if (remainder > halfway || (remainder == halfway && (result & 1u))) ++result;
  return static_cast<uint16_t>(sign | result);
}

inline float bf16_bits_to_float(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

inline uint16_t float_to_bf16_bits(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fff;  // canonical NaN, as cuda_bf16
  const uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

inline float to_float(Half h) {
  return half_bits_to_float(h.bits);
}
inline float to_float(BFloat16 b) {
  return bf16_bits_to_float(b.bits);
}
inline Half to_half(float f) {
  return Half{float_to_half_bits(f)};
}
inline BFloat16 to_bf16(float f) {
  return BFloat16{float_to_bf16_bits(f)};
}

}  // namespace qllm
