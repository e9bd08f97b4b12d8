// LLM.int8() arithmetic, written once for the CPU reference and the CUDA kernels (same rounding on both).
#pragma once

#include <cstdint>

#include "quant/float_ops.h"

namespace qllm::int8q {

using namespace fops;

constexpr int kMax = 127;

// 127 / absmax, the factor that maps a row onto [-127, 127]; 0 for an all-zero row.
QLLM_HD float inverse_step(float absmax) {
  return absmax > 0.0f ? div_rn(127.0f, absmax) : 0.0f;
}

// round(x * (127 / absmax)) clamped to [-127, 127], round half to even.
QLLM_HD int8_t quantize(float x, float inverse) {
  const int32_t q = round_half_even(mul_rn(x, inverse));
  return static_cast<int8_t>(q < -kMax ? -kMax : (q > kMax ? kMax : q));
}

// q * absmax / 127: the value an int8 stands for.
QLLM_HD float dequantize(int8_t q, float absmax) {
  return div_rn(mul_rn(static_cast<float>(q), absmax), 127.0f);
}

}  // namespace qllm::int8q
