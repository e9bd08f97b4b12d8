// The work that dominates GPTQ's and AWQ's calibration pass (engine/gptq_model.h), behind one interface: the
// products and the attention, on the CPU reference math (model/cpu_ops.h, quant/gptq_ref.h) or on the GPU
// (cuBLAS fp32). The rest of the pass (norms, RoPE, SwiGLU, the solvers' inputs) stays on the host, so the two
// differ only in the order of fp32 sums.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "quant/gptq_ref.h"

namespace qllm {

class CalibrationMath {
 public:
  virtual ~CalibrationMath() = default;
  // out [tokens, rows] = x [tokens, cols] . w^T, with w [rows, cols]; all row-major fp32.
  void matmul(std::vector<float>& out, std::span<const float> x, int64_t tokens, std::span<const float> w,
              int64_t rows, int64_t cols);
  // (2 / tokens) * sum over x's rows of x x^T: [cols, cols], symmetric (HessianAccumulator's definition).
  std::vector<float> hessian(std::span<const float> x, int64_t cols);
  // sum_r (w_r - w'_r)^T H (w_r - w'_r) and sum_r w_r^T H w_r over w, w_hat [rows, cols] and H [cols, cols]
  // (quant/gptq_ref.h hessian_output_error): AWQ's search judges every candidate by it.
  OutputError output_error(std::span<const float> w, std::span<const float> w_hat, int64_t rows, int64_t cols,
                           std::span<const float> hessian);
  // Causal grouped-query attention within each window (positions restart at 0 in every window), as the
  // reference engine computes it: out [tokens, heads * head_dim] from q (RoPE applied) and k, v
  // [tokens, kv_heads * head_dim]; window_start [windows + 1] holds each window's first row, then tokens.
  void attention(std::vector<float>& out, std::span<const float> q, std::span<const float> k,
                 std::span<const float> v, std::span<const int64_t> window_start, int64_t heads,
                 int64_t kv_heads, int64_t head_dim);
  virtual std::string name() const = 0;

 protected:
  // The same, on operands whose sizes the public functions have checked; out is already sized.
  virtual void multiply(std::span<float> out, std::span<const float> x, int64_t tokens,
                        std::span<const float> w, int64_t rows, int64_t cols) = 0;
  virtual std::vector<float> gram(std::span<const float> x, int64_t tokens, int64_t cols) = 0;
  virtual OutputError quadratic_forms(std::span<const float> w, std::span<const float> w_hat, int64_t rows,
                                      int64_t cols, std::span<const float> hessian) = 0;
  virtual void attend(std::span<float> out, std::span<const float> q, std::span<const float> k,
                      std::span<const float> v, std::span<const int64_t> window_start, int64_t heads,
                      int64_t kv_heads, int64_t head_dim) = 0;
};

// The CPU reference math (OpenMP).
std::unique_ptr<CalibrationMath> cpu_calibration_math();

// The GPU's, in a CUDA build (engine/calibration_math_cuda.cpp); a CPU-only build has none and fails clearly.
std::unique_ptr<CalibrationMath> cuda_calibration_math();

}  // namespace qllm
