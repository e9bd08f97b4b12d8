// Calibration-like inputs for the GPTQ tests (tests/cpu/test_gptq_ref.cpp, tests/gpu/test_gptq_cuda.cpp):
// correlated columns of unequal size (a few large channels, as real activations have), which is where GPTQ's
// error feedback pays, and their Hessian by the CPU reference.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "quant/gptq_ref.h"
#include "tests/support/test_util.h"

namespace qllm::testing {

inline std::vector<float> correlated_inputs(int64_t tokens, int64_t dim, Rng& rng) {
  std::vector<float> mix(static_cast<size_t>(dim * dim));
  for (auto& v : mix) v = static_cast<float>(rng.normal() / std::sqrt(static_cast<double>(dim)));
  for (int64_t i = 0; i < dim; ++i) mix[i * dim + i] += 1.0f;
  std::vector<float> z(static_cast<size_t>(dim)), x(static_cast<size_t>(tokens * dim));
  for (int64_t t = 0; t < tokens; ++t) {
    for (auto& v : z) v = static_cast<float>(rng.normal());
    for (int64_t j = 0; j < dim; ++j) {
      float s = 0;
      for (int64_t i = 0; i < dim; ++i) s += z[i] * mix[i * dim + j];
      x[t * dim + j] = s * (j % 7 == 0 ? 4.0f : 1.0f);
    }
  }
  return x;
}

inline std::vector<float> hessian_of(const std::vector<float>& x, int64_t dim) {
  HessianAccumulator acc(dim);
  acc.add(x.data(), static_cast<int64_t>(x.size()) / dim);
  return acc.hessian();
}

}  // namespace qllm::testing
