// Small GPU helpers for benchmarks and tests: seeded random fills, error metrics between two outputs, and a
// spin kernel that keeps the GPU busy while the host enqueues a timed launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "qllm/dtype.h"

namespace qllm::bench {

// out[i] = mean + stddev * N(0, 1), a function of (seed, i) only: the same on every GPU and launch.
void fill_normal_device(void* out, DType dtype, int64_t count, uint64_t seed, float mean, float stddev,
                        cudaStream_t stream = nullptr);

// Over all elements of two [count] arrays of `dtype`: sum |a - b|, sum (a - b)^2, sum b^2, and NaN/Inf seen
// in a. Summed in double on the device (atomics, so the last bits may vary between runs).
struct DiffStats {
  double sum_abs_diff = 0;
  double sum_sq_diff = 0;
  double sum_sq_ref = 0;
  unsigned long long nonfinite = 0;
  double mean_abs_diff(int64_t count) const { return sum_abs_diff / static_cast<double>(count); }
  double rel_fro(void) const;
};
DiffStats diff_stats_device(const void* a, const void* b, DType dtype, int64_t count);

// Multiplies `count` columns of the [rows, cols] 16-bit matrix x (chosen from `seed`) by `factor`: activation
// outlier columns like those of real LLMs, for the LLM.int8() benchmarks.
void plant_outlier_columns_device(void* x, DType dtype, int64_t rows, int64_t cols, int count, uint64_t seed,
                                  float factor);

// out[r, c] = values[r, c] * absmax[r] / 127, rounded to `dtype`: int8 rows back to 16-bit weights.
void dequantize_int8_rows_device(const int8_t* values, const float* absmax, int64_t rows, int64_t cols,
                                 void* out, DType dtype);

// Busy-waits about `microseconds` on the GPU without touching memory.
void spin_device(double microseconds, cudaStream_t stream = nullptr);

}  // namespace qllm::bench
