// GPTQ on the GPU (docs/GPTQ.md): the Hessian accumulated with cuBLAS (fp32 syrk), the inverse factor by
// cuSOLVER in double (potrf, potri, potrf), and the column loop as two kernels per lazy batch (the batch's
// columns one after another, one warp per row; then the update of the later columns). Given the same
// inverse factor the column loop gives the CPU reference's bits (quant/gptq_ref.h): every weight receives
// the same float operations in the same order, and group parameters use the shared int4 math.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kernels/runtime/cuda_utils.h"
#include "quant/gptq_ref.h"

namespace qllm {

// H = (2 / n) * sum x x^T over device inputs, accumulated in fp32 on the device.
class HessianCuda {
 public:
  // `handle`: a cuBLAS handle to use (its owner keeps it alive); null: one of its own (cublasCreate costs
  // milliseconds, too much once per layer input).
  explicit HessianCuda(int64_t dim, cublasHandle_t handle = nullptr);
  ~HessianCuda();
  HessianCuda(const HessianCuda&) = delete;
  HessianCuda& operator=(const HessianCuda&) = delete;

  // x: device [rows, dim] fp32, row-major.
  void add(const float* x, int64_t rows, cudaStream_t stream);
  int64_t samples() const { return samples_; }
  // The full symmetric [dim, dim] matrix on the host (waits for the stream).
  std::vector<float> hessian(cudaStream_t stream) const;

 private:
  int64_t dim_;
  int64_t samples_ = 0;
  cublasHandle_t handle_ = nullptr;
  bool own_handle_ = false;
  DeviceBuffer<float> sum_;  // column-major lower triangle of sum x x^T
};

// out [tokens, rows] = x [tokens, cols] . w^T, w [rows, cols]; all device, fp32, row-major. cuBLAS SGEMM in its
// default math mode (no TF32), so the products keep fp32's precision: GPTQ's calibration forward.
class MatmulF32Cuda {
 public:
  MatmulF32Cuda();
  ~MatmulF32Cuda();
  MatmulF32Cuda(const MatmulF32Cuda&) = delete;
  MatmulF32Cuda& operator=(const MatmulF32Cuda&) = delete;

  void run(const float* x, int64_t tokens, const float* w, int64_t rows, int64_t cols, float* out,
           cudaStream_t stream);
  cublasHandle_t handle() const { return handle_; }  // for a HessianCuda beside it

 private:
  cublasHandle_t handle_ = nullptr;
};

// Causal grouped-query attention of GPTQ's calibration forward, within each window (positions restart at 0 in
// every window), in fp32: per window and head the scores Q K^T / sqrt(head_dim) by cuBLAS SGEMM (no TF32),
// the causal softmax (causal_softmax.cu), then P V. The CPU reference engine's attention computed as products,
// so the two differ in the order of fp32 sums only. Scratch: heads x len x len floats for the longest window.
class CausalAttentionF32Cuda {
 public:
  // `handle`: a cuBLAS handle its owner keeps alive (MatmulF32Cuda::handle()).
  explicit CausalAttentionF32Cuda(cublasHandle_t handle) : handle_(handle) {}

  // q, out: device [tokens, heads * head_dim]; k, v: device [tokens, kv_heads * head_dim]; RoPE already applied.
  // window_start: [windows + 1] first row of each window (host), the last entry = tokens.
  void run(const float* q, const float* k, const float* v, float* out, std::span<const int64_t> window_start,
           int64_t heads, int64_t kv_heads, int64_t head_dim, cudaStream_t stream);

 private:
  cublasHandle_t handle_;
  DeviceBuffer<float> scores_;
};

// U (upper, U^T U = H^-1, lower triangle zero) of the prepared Hessian on the device, [dim, dim] row-major
// fp32: cuSOLVER in double. qllm::Error when H is not positive definite.
DeviceBuffer<float> gptq_inverse_factor_cuda(const GptqPrepared& prepared, cudaStream_t stream);

// The column loop on the device, from the inverse factor `u` (device, as above); the result is the CPU
// reference's gptq_quantize_ref for the same factor, bit for bit.
Int4Matrix gptq_quantize_cuda(std::span<const float> w, int64_t rows, int64_t cols,
                              const GptqPrepared& prepared, const float* u, const Int4Scheme& scheme,
                              int64_t block_size, cudaStream_t stream,
                              std::span<const int4::GroupParams> groups = {});

class GptqSolverCuda final : public GptqSolver {
 public:
  void factor(std::span<const float> hessian, int64_t dim, const GptqOptions& options) override;
  Int4Matrix quantize(std::span<const float> w, int64_t rows, int64_t cols, const Int4Scheme& scheme,
                      std::span<const int4::GroupParams> groups) override;
  std::string name() const override { return "cuda"; }

 private:
  GptqPrepared prepared_;
  DeviceBuffer<float> factor_;
  int64_t block_size_ = 128;
};

}  // namespace qllm
