// LLM.int8() on the GPU: Y[M, N] = X[M, K] @ W[N, K]^T with X in bf16 (or f16), W int8 rows with one absmax
// scale each (quantized offline), X quantized per token on the fly with its outlier columns (any |x| >= the
// threshold) kept in 16 bits. One call: activation prep -> int8 tensor-core GEMM with a fused epilogue.
// Matches gemm_int8_ref (include/qllm/int8.h) up to fp32 rounding of the scaling and the bf16 output.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <string_view>

#include "kernels/gemm/int8_launch.h"
#include "kernels/gemm/splitk_workspace.h"
#include "kernels/runtime/cuda_utils.h"
#include "qllm/dtype.h"
#include "qllm/int8.h"

namespace qllm {

struct Int8DeviceWeights {
  int64_t n = 0, k = 0;
  DeviceBuffer<int8_t> values;  // [n, k] row-major
  DeviceBuffer<float> absmax;   // [n]
  // The wide kernel's TMA maps of `values`, one per CTA row count (64, 128, 256), encoded once (encode_maps)
  // where the wide kernel can run.
  bool has_maps = false;
  CUtensorMap maps[3]{};

  static Int8DeviceWeights upload(const Int8Rows& rows);
  Int8Rows download() const;
  size_t bytes() const { return values.bytes() + absmax.bytes(); }
  void encode_maps();  // upload() and quantize_int8_weights_cuda() call it
  const CUtensorMap& map_for_rows(int block_n) const;
};

// Quantizes [n, k] 16-bit weights on the GPU (bit-identical to quantize_int8_rows_ref); throws on NaN/Inf.
// Synchronises `stream` (a load-time call, not for a captured region).
Int8DeviceWeights quantize_int8_weights_cuda(const void* weights, DType dtype, int64_t n, int64_t k,
                                             cudaStream_t stream);

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

// What the activation prep recorded since the status was last cleared.
struct Int8Status {
  int64_t first_nonfinite = -1;  // flat index (row * k + column) of the first NaN/Inf activation, or -1
  int64_t max_outliers = 0;      // the most outlier columns of any call
};

// Owns the activation and split-K workspaces; one instance per stream (launches must not overlap).
// reserve() sizes them before any run(); run() then only enqueues work (no allocation, no synchronisation,
// no host reads of device data, no host-side state that a replayed graph would get wrong), so it can be
// captured in a CUDA graph. NaN/Inf activations and the outlier column counts are recorded on the device:
// fetch_status() copies that record to the host (asynchronously, capturable), check() reads the copy.
class Int8Gemm {
 public:
  float threshold = kDefaultOutlierThreshold;  // 0 or inf disables the outlier decomposition
  Int8Tuning tuning;

  Int8Gemm();
  ~Int8Gemm();
  Int8Gemm(const Int8Gemm&) = delete;
  Int8Gemm& operator=(const Int8Gemm&) = delete;

  Int8Plan plan(int64_t m, int64_t n, int64_t k, Int8Kernel kernel = Int8Kernel::Auto) const;

  // Workspaces for every M in [1, max_m] on [n, k] weights, and the kernels those plans launch configured.
  // Synchronous; call it before run() and outside graph capture.
  void reserve(int64_t n, int64_t k, int64_t max_m, Int8Kernel kernel = Int8Kernel::Auto);
  size_t workspace_bytes() const;

  // y[m, n] = x[m, k] @ W[n, k]^T (the argument order of every qllm GEMM). x: [m, weights.k], y:
  // [m, weights.n] device arrays of `dtype` (bf16 or f16), 16-byte aligned. Only enqueues work on `stream`;
  // a size outside what reserve() covered throws.
  void run(const void* x, const Int8DeviceWeights& weights, void* y, int64_t m, DType dtype,
           cudaStream_t stream, Int8Kernel kernel = Int8Kernel::Auto);

  // Enqueues a copy of the device-side status to pinned host memory (capturable in a graph).
  void fetch_status(cudaStream_t stream);
  // The status as of the last fetch_status(), once `stream` has passed it (the caller synchronises).
  Int8Status status() const;
  // Throws on a NaN/Inf activation, from the fetched status; returns the most outlier columns of a call
  // (any number up to K is computed). Does not synchronise.
  int64_t check() const;
  // Clears the device-side status (enqueued on `stream`; not inside a captured region).
  void clear_status(cudaStream_t stream);

 private:
  DeviceBuffer<int8_t> xq_;
  DeviceBuffer<float> x_absmax_;
  DeviceBuffer<uint32_t> outlier_bits_;  // zero between calls (the GEMM clears what the prep used)
  DeviceBuffer<int> outlier_cols_;
  DeviceBuffer<uint16_t> x_outliers_;
  DeviceBuffer<unsigned char> status_;
  kernels::Int8PrepStatus* host_status_ = nullptr;  // pinned
  kernels::SplitKWorkspace splitk_;
  int64_t reserved_m_ = 0, reserved_k_ = 0;
  int64_t last_k_ = 1;
  // The wide kernel's map of the int8 activations for the last M (host-only encoding).
  int64_t x_map_rows_ = 0, x_map_cols_ = 0;
  CUtensorMap x_map_{};
};

}  // namespace qllm
