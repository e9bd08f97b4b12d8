// The log of a row's softmax normaliser on the device, shared by the token log-prob and top log-prob kernels:
//   log_norm = log(sum_i exp(f64(l_i) - m)) + m,   m = max_i l_i (f32),
// the max and the count of non-finite logits in a first pass, the sum in double in a second (from L2);
// reductions in a fixed order, so the result does not change from run to run. Include only from .cu files.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/row_ops.cuh"

namespace qllm::kernels::ops {

struct RowLogNorm {
  double log_norm = 0;
  bool finite = true;  // false when a logit is NaN or infinite (log_norm is then meaningless)
};

// Every thread of the CTA (kThreads of them) calls it and gets the same result; `vector`: 16-byte loads.
template <int kThreads, typename T>
__device__ RowLogNorm row_log_norm(const T* row, int64_t vocab, bool vector, float* max_scratch,
                                   double* sum_scratch) {
  float max = -INFINITY;
  double non_finite = 0.0;
  for (int64_t c = threadIdx.x * 8; c < vocab; c += kThreads * 8) {
    float v[8];
    const int count = count8(vocab - c);
    load8(row + c, vector, count, v);
    for (int e = 0; e < count; ++e) {
      max = fmaxf(max, v[e]);
      non_finite += isfinite(v[e]) ? 0.0 : 1.0;
    }
  }
  max = block_max(max, max_scratch);
  non_finite = block_sum(non_finite, sum_scratch);
  double sum = 0.0;
  for (int64_t c = threadIdx.x * 8; c < vocab; c += kThreads * 8) {
    float v[8];
    const int count = count8(vocab - c);
    load8(row + c, vector, count, v);
    for (int e = 0; e < count; ++e) sum += exp(static_cast<double>(v[e]) - max);
  }
  sum = block_sum(sum, sum_scratch);
  return {log(sum) + max, non_finite == 0.0};
}

}  // namespace qllm::kernels::ops
