#include "engine/calibration_math.h"

#include "model/cpu_ops.h"
#include "qllm/error.h"
#include "quant/gptq_ref.h"

namespace qllm {

namespace {

class CpuCalibrationMath final : public CalibrationMath {
 public:
  void matmul(std::vector<float>& out, std::span<const float> x, int64_t tokens, std::span<const float> w,
              int64_t rows, int64_t cols) override {
    QLLM_CHECK(static_cast<int64_t>(x.size()) == tokens * cols && static_cast<int64_t>(w.size()) == rows * cols,
               "calibration matmul: x has {} values for [{}, {}], w {} for [{}, {}]", x.size(), tokens, cols,
               w.size(), rows, cols);
    out.resize(static_cast<size_t>(tokens * rows));
    const WeightMatrix view{.name = "calibration", .dtype = DType::F32, .data = w.data(), .rows = rows, .cols = cols};
    cpu::matmul(out.data(), x.data(), tokens, view);
  }

  std::vector<float> hessian(std::span<const float> x, int64_t cols) override {
    HessianAccumulator acc(cols);
    acc.add(x.data(), static_cast<int64_t>(x.size()) / cols);
    return acc.hessian();
  }

  OutputError output_error(std::span<const float> w, std::span<const float> w_hat, int64_t rows, int64_t cols,
                           std::span<const float> hessian) override {
    return hessian_output_error(w, w_hat, rows, cols, hessian);
  }

  std::string name() const override { return "cpu"; }
};

}  // namespace

std::unique_ptr<CalibrationMath> cpu_calibration_math() { return std::make_unique<CpuCalibrationMath>(); }

#if !QLLM_HAVE_CUDA
std::unique_ptr<CalibrationMath> cuda_calibration_math() {
  throw Error("the GPU calibration math needs a CUDA build of qllm (this one is CPU-only)");
}
#endif

}  // namespace qllm
