// CalibrationMath on the GPU: each product's operands are uploaded, multiplied by cuBLAS in fp32 and the
// result downloaded. The pass keeps its activations on the host (they are the CPU attention's inputs too);
// the copies cost far less than the products they move off the CPU.
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

 private:
  MatmulF32Cuda matmul_;
  DeviceBuffer<float> x_, w_, out_;
};

}  // namespace

std::unique_ptr<CalibrationMath> cuda_calibration_math() {
  return std::make_unique<CudaCalibrationMath>();
}

}  // namespace qllm
