// CPU reference RMSNorm (the spec of rmsnorm.cu): plain loops, the rounding points stated in rmsnorm.h.
#include <cmath>
#include <cstddef>
#include <vector>

#include "kernels/norm/rmsnorm.h"
#include "qllm/error.h"
#include "qllm/half.h"

namespace qllm {

namespace {

float load16(const void* data, size_t i, DType dtype) {
  const uint16_t bits = static_cast<const uint16_t*>(data)[i];
  return dtype == DType::BF16 ? bf16_bits_to_float(bits) : half_bits_to_float(bits);
}

void store16(void* data, size_t i, float value, DType dtype) {
  static_cast<uint16_t*>(data)[i] =
      dtype == DType::BF16 ? float_to_bf16_bits(value) : float_to_half_bits(value);
}

}  // namespace

void rmsnorm_ref(const RmsNormParams& p) {
  QLLM_CHECK((p.x != nullptr) != (p.residual != nullptr), "rmsnorm_ref: set exactly one of x and residual");
  const auto hidden = static_cast<size_t>(p.hidden);
  std::vector<float> row(hidden);
  for (size_t t = 0; t < static_cast<size_t>(p.tokens); ++t) {
    const size_t base = t * hidden;
    for (size_t i = 0; i < hidden; ++i) {
      if (p.x != nullptr) {
        row[i] = load16(p.x, base + i, p.dtype);
      } else {
        float& r = p.residual[base + i];
        if (p.delta != nullptr) r += load16(p.delta, base + i, p.dtype);
        row[i] = r;
      }
    }
    double sum_sq = 0.0;
    for (float v : row) sum_sq += static_cast<double>(v) * v;
    const auto inv_rms = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(hidden) + p.eps));
    for (size_t i = 0; i < hidden; ++i) store16(p.out, base + i, p.weight[i] * (row[i] * inv_rms), p.dtype);
  }
}

}  // namespace qllm
