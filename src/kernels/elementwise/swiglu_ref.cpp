// CPU reference SwiGLU (the spec of swiglu.cu): f32 operations in the order of swiglu.h.
#include <cmath>
#include <cstddef>

#include "kernels/elementwise/swiglu.h"
#include "qllm/half.h"

namespace qllm {

void swiglu_ref(const SwigluParams& p) {
  const auto* in = static_cast<const uint16_t*>(p.gate_up);
  auto* out = static_cast<uint16_t*>(p.out);
  const bool bf16 = p.dtype == DType::BF16;
  const auto to_float = [&](uint16_t b) { return bf16 ? bf16_bits_to_float(b) : half_bits_to_float(b); };
  const auto width = static_cast<size_t>(p.intermediate);
  for (size_t t = 0; t < static_cast<size_t>(p.tokens); ++t) {
    for (size_t i = 0; i < width; ++i) {
      const float g = to_float(in[t * 2 * width + i]);
      const float u = to_float(in[t * 2 * width + width + i]);
      const float value = g / (1.0f + std::exp(-g)) * u;
      out[t * width + i] = bf16 ? float_to_bf16_bits(value) : float_to_half_bits(value);
    }
  }
}

}  // namespace qllm
