// CalibrationMath on the GPU: each product's (and the attention's) operands are uploaded, computed by cuBLAS in
// fp32 and the result downloaded. The pass keeps its activations on the host (norms, RoPE and SwiGLU stay
// there); the copies cost far less than the work they move off the CPU.
#include <cuda_runtime.h>

#include <algorithm>

#include "engine/calibration_math.h"
#include "kernels/gptq/gptq_cuda.h"
#include "kernels/runtime/cuda_utils.h"
#include "qllm/error.h"

namespace qllm {

namespace {

// A device buffer that only grows, so that a pass of same-sized layers allocates once per operand.
void ensure(DeviceBuffer<float>& buffer, size_t count, const char* what) {
  if (buffer.size() < count) buffer = DeviceBuffer<float>(count, what);
}

class CudaCalibrationMath final : public CalibrationMath {
 public:
  std::string name() const override { return "cuda"; }

 protected:
  void multiply(std::span<float> out, std::span<const float> x, int64_t tokens, std::span<const float> w,
                int64_t rows, int64_t cols) override {
    ensure(x_, x.size(), "calibration activations");
    ensure(w_, w.size(), "calibration weights");
    ensure(out_, out.size(), "calibration outputs");
    QLLM_CUDA_CHECK(cudaMemcpy(x_.data(), x.data(), x.size_bytes(), cudaMemcpyHostToDevice));
    QLLM_CUDA_CHECK(cudaMemcpy(w_.data(), w.data(), w.size_bytes(), cudaMemcpyHostToDevice));
    matmul_.run(x_.data(), tokens, w_.data(), rows, cols, out_.data(), nullptr);
    QLLM_CUDA_CHECK(cudaMemcpy(out.data(), out_.data(), out.size_bytes(), cudaMemcpyDeviceToHost));
  }

  std::vector<float> gram(std::span<const float> x, int64_t tokens, int64_t cols) override {
    ensure(x_, x.size(), "calibration activations");
    QLLM_CUDA_CHECK(cudaMemcpy(x_.data(), x.data(), x.size_bytes(), cudaMemcpyHostToDevice));
    HessianCuda h(cols, matmul_.handle());
    h.add(x_.data(), tokens, nullptr);
    return h.hessian(nullptr);
  }

  // Two products on the device, D H and W H (H is symmetric, so it serves as its own transpose), each then
  // multiplied elementwise by D or W and summed on the host in double.
  OutputError quadratic_forms(std::span<const float> w, std::span<const float> w_hat, int64_t rows,
                              int64_t cols, std::span<const float> hessian) override {
    std::vector<float> d(w.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = w[i] - w_hat[i];
    std::vector<float> dh, wh;
    matmul(dh, d, rows, hessian, cols, cols);
    matmul(wh, w, rows, hessian, cols, cols);
    double err = 0, ref = 0;
    for (size_t i = 0; i < d.size(); ++i) {
      err += static_cast<double>(d[i]) * dh[i];
      ref += static_cast<double>(w[i]) * wh[i];
    }
    return {std::max(err, 0.0), ref};
  }

  void attend(std::span<float> out, std::span<const float> q, std::span<const float> k,
              std::span<const float> v, std::span<const int64_t> window_start, int64_t heads,
              int64_t kv_heads, int64_t head_dim) override {
    ensure(x_, q.size(), "calibration queries");
    ensure(w_, k.size() + v.size(), "calibration keys and values");
    ensure(out_, out.size(), "calibration attention outputs");
    QLLM_CUDA_CHECK(cudaMemcpy(x_.data(), q.data(), q.size_bytes(), cudaMemcpyHostToDevice));
    QLLM_CUDA_CHECK(cudaMemcpy(w_.data(), k.data(), k.size_bytes(), cudaMemcpyHostToDevice));
    QLLM_CUDA_CHECK(cudaMemcpy(w_.data() + k.size(), v.data(), v.size_bytes(), cudaMemcpyHostToDevice));
    attention_.run(x_.data(), w_.data(), w_.data() + k.size(), out_.data(), window_start, heads, kv_heads,
                   head_dim, nullptr);
    QLLM_CUDA_CHECK(cudaMemcpy(out.data(), out_.data(), out.size_bytes(), cudaMemcpyDeviceToHost));
  }

 private:
  MatmulF32Cuda matmul_;
  CausalAttentionF32Cuda attention_{matmul_.handle()};
  DeviceBuffer<float> x_, w_, out_;
};

}  // namespace

std::unique_ptr<CalibrationMath> cuda_calibration_math() {
  return std::make_unique<CudaCalibrationMath>();
}

}  // namespace qllm
