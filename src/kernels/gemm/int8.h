// LLM.int8() on the GPU: Y[M, N] = X[M, K] @ W[N, K]^T with X in bf16 (or f16), W int8 rows with one absmax
// scale each (quantized offline), X quantized per token on the fly with its outlier columns (any |x| >= the
// threshold) kept in 16 bits. One call: activation prep -> int8 tensor-core GEMM with a fused epilogue.
// Matches gemm_int8_ref (include/qllm/int8.h) up to fp32 rounding of the scaling and the bf16 output.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <string_view>

#include "kernels/gemm/splitk_workspace.h"
#include "kernels/runtime/cuda_utils.h"
#include "qllm/dtype.h"
#include "qllm/int8.h"

namespace qllm {

struct Int8DeviceWeights {
  int64_t n = 0, k = 0;
  DeviceBuffer<int8_t> values;  // [n, k] row-major
  DeviceBuffer<float> absmax;   // [n]

  static Int8DeviceWeights upload(const Int8Rows& rows);
  Int8Rows download() const;
  size_t bytes() const { return values.bytes() + absmax.bytes(); }
};

// Quantizes [n, k] 16-bit weights on the GPU (bit-identical to quantize_int8_rows_ref); throws on NaN/Inf.
Int8DeviceWeights quantize_int8_weights_cuda(const void* weights, DType dtype, int64_t n, int64_t k,
                                             cudaStream_t stream = nullptr);

enum class Int8Kernel { Auto, Skinny, Wide };
std::string_view int8_kernel_name(Int8Kernel kernel);
Int8Kernel parse_int8_kernel(std::string_view name);  // auto | skinny | wide

struct Int8Plan {
  Int8Kernel kernel = Int8Kernel::Skinny;
  int tokens_per_cta = 8;
  int rows_per_cta = 128;
  int warps_k = 1;      // skinny
  int block_n = 256;    // wide: weight rows per CTA
  int ctas_per_sm = 1;  // wide: resident CTAs per SM (sets the pipeline depth)
  int splits = 1;
  int steps_per_split = 0;  // skinny: 64-wide k steps; wide: 128-wide k blocks
};

struct Int8Tuning {
  int tokens_per_cta = 0, warps_k = 0, block_n = 0, ctas_per_sm = 0, splits = 0;  // 0: automatic
};

// Owns the activation and split-K workspaces; one instance per stream.
class Int8Gemm {
 public:
  float threshold = kDefaultOutlierThreshold;  // 0 or inf disables the outlier decomposition
  Int8Tuning tuning;

  Int8Plan plan(int64_t m, int64_t n, int64_t k, Int8Kernel kernel = Int8Kernel::Auto) const;

  // x: [m, k], y: [m, n] device arrays of `dtype` (bf16 or f16), 16-byte aligned. Only enqueues work.
  void run(const void* x, DType dtype, int64_t m, int64_t k, const Int8DeviceWeights& weights, void* y,
           cudaStream_t stream = nullptr, Int8Kernel kernel = Int8Kernel::Auto);

  // Waits for the last run; throws on NaN/Inf activations in any run since the previous check, or on more
  // outlier columns than supported in the last run. Returns the last run's outlier column count.
  int64_t check(cudaStream_t stream = nullptr);

 private:
  void reserve(int64_t m, int64_t k);

  DeviceBuffer<int8_t> xq_;
  DeviceBuffer<float> x_absmax_;
  DeviceBuffer<uint32_t> outlier_bits_;  // two bitmaps of the outlier columns, used in turn
  bool bitmap_parity_ = false;
  DeviceBuffer<int> outlier_cols_;
  DeviceBuffer<uint16_t> x_outliers_;
  DeviceBuffer<unsigned char> status_;
  kernels::SplitKWorkspace splitk_;
  int64_t last_k_ = 1;
  // Tensor maps of the last shapes (encoding one costs microseconds of host time).
  const void* x_map_base_ = nullptr;
  int64_t x_map_rows_ = 0, x_map_cols_ = 0;
  CUtensorMap x_map_{};
  const void* w_map_base_ = nullptr;
  int64_t w_map_rows_ = 0, w_map_cols_ = 0;
  int w_map_box_ = 0;
  CUtensorMap w_map_{};
};

}  // namespace qllm
