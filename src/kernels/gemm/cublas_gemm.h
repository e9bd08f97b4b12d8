// cuBLASLt on 16-bit weights: Y[M, N] = X[M, K] @ W[N, K]^T (bf16 or f16 in and out, fp32 accumulation),
// the heuristic's best algorithm. The baseline every qllm GEMM is benchmarked against, and the second half
// of the W4A16 "dequant" path for large M (dequantize to a 16-bit scratch, then this).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "kernels/runtime/cuda_utils.h"
#include "qllm/dtype.h"

namespace qllm {

class CublasGemm {
 public:
  CublasGemm();
  ~CublasGemm();
  CublasGemm(const CublasGemm&) = delete;
  CublasGemm& operator=(const CublasGemm&) = delete;

  // x: [m, k], w: [n, k], y: [m, n], row-major device arrays of `dtype`.
  void run(const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k, DType dtype,
           cudaStream_t stream);

 private:
  // Descriptors and the heuristic's algorithm for one shape: made once, outside any timed region.
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t w = nullptr, x = nullptr, y = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  const Plan& plan(int64_t m, int64_t n, int64_t k, DType dtype);

  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer<unsigned char> workspace_;
  std::map<std::tuple<int64_t, int64_t, int64_t, DType>, Plan> plans_;
};

}  // namespace qllm
