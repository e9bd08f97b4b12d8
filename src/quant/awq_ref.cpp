// AWQ-style scale search (awq_ref.h): plain loops over the exponent grid; each candidate is quantized by the
// reference RTN quantizer and judged through the inputs' Hessian.
#include "quant/awq_ref.h"

#include <algorithm>
#include <cmath>

#include "qllm/error.h"

namespace qllm {

std::vector<float> awq_scales(std::span<const float> mean_abs, double alpha) {
  std::vector<float> s(mean_abs.size());
  for (size_t k = 0; k < s.size(); ++k) {
    s[k] = static_cast<float>(std::pow(std::max(static_cast<double>(mean_abs[k]), 1e-4), alpha));
  }
  if (s.empty()) return s;
  // max * min = 1 after the division: the scales straddle 1 and neither the weights nor the norm drift.
  const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
  const double norm = std::sqrt(static_cast<double>(*lo) * *hi);
  for (float& v : s) v = static_cast<float>(v / norm);
  return s;
}

namespace {

// The weight as the model would compute with it after scaling: Q(W diag(s)) diag(s)^-1.
std::vector<float> scaled_roundtrip(const AwqWeight& w, std::span<const float> s, const Int4Scheme& scheme) {
  const auto dim = static_cast<int64_t>(s.size());
  std::vector<float> scaled(w.values.begin(), w.values.end());
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int64_t k = 0; k < dim; ++k) scaled[r * dim + k] *= s[k];
  }
  std::vector<float> q = dequantize_int4_ref(quantize_int4_ref(scaled, w.rows, dim, scheme));
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int64_t k = 0; k < dim; ++k) q[r * dim + k] /= s[k];
  }
  return q;
}

}  // namespace

AwqSearch awq_search_ref(std::span<const float> mean_abs, std::span<const float> hessian, int64_t dim,
                         std::span<const AwqWeight> weights, const Int4Scheme& scheme, int grid,
                         const OutputErrorFn& output_error) {
  QLLM_CHECK(dim > 0 && static_cast<int64_t>(mean_abs.size()) == dim &&
                 static_cast<int64_t>(hessian.size()) == dim * dim,
             "AWQ: an input of {} channels needs {} mean values and a {}x{} Hessian, got {} and {}", dim, dim,
             dim, dim, mean_abs.size(), hessian.size());
  QLLM_CHECK(grid >= 1 && !weights.empty(), "AWQ: a grid of {} exponents over {} weights", grid,
             weights.size());
  for (const AwqWeight& w : weights) {
    QLLM_CHECK(static_cast<int64_t>(w.values.size()) == w.rows * dim,
               "AWQ: a weight of {} rows x {} inputs needs {} values, got {}", w.rows, dim, w.rows * dim,
               w.values.size());
  }
  AwqSearch best;
  for (int i = 0; i < grid; ++i) {
    const double alpha = static_cast<double>(i) / grid;
    const std::vector<float> s = awq_scales(mean_abs, alpha);
    double error = 0, reference = 0;
    for (const AwqWeight& w : weights) {
      const OutputError e = output_error(w.values, scaled_roundtrip(w, s, scheme), w.rows, dim, hessian);
      error += e.error;
      reference += e.reference;
    }
    const double relative = reference > 0 ? error / reference : 0.0;
    if (i == 0) best.error_unscaled = relative;
    if (i == 0 || relative < best.error) {
      best.error = relative;
      best.alpha = alpha;
      best.scales = s;
    }
  }
  return best;
}

}  // namespace qllm
