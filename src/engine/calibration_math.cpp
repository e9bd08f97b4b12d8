#include "engine/calibration_math.h"

#include "model/cpu_ops.h"
#include "qllm/error.h"

namespace qllm {

void CalibrationMath::matmul(std::vector<float>& out, std::span<const float> x, int64_t tokens,
                             std::span<const float> w, int64_t rows, int64_t cols) {
  QLLM_CHECK(tokens >= 0 && rows > 0 && cols > 0 && static_cast<int64_t>(x.size()) == tokens * cols &&
                 static_cast<int64_t>(w.size()) == rows * cols,
             "calibration matmul: x has {} values for [{}, {}], w {} for [{}, {}]", x.size(), tokens, cols,
             w.size(), rows, cols);
  out.resize(static_cast<size_t>(tokens * rows));
  multiply(out, x, tokens, w, rows, cols);
}

std::vector<float> CalibrationMath::hessian(std::span<const float> x, int64_t cols) {
  QLLM_CHECK(cols > 0 && !x.empty() && x.size() % static_cast<size_t>(cols) == 0,
             "calibration Hessian: {} values are not whole rows of {} inputs", x.size(), cols);
  return gram(x, static_cast<int64_t>(x.size()) / cols, cols);
}

OutputError CalibrationMath::output_error(std::span<const float> w, std::span<const float> w_hat,
                                          int64_t rows, int64_t cols, std::span<const float> hessian) {
  QLLM_CHECK(rows > 0 && cols > 0 && static_cast<int64_t>(w.size()) == rows * cols &&
                 w_hat.size() == w.size() && static_cast<int64_t>(hessian.size()) == cols * cols,
             "output error: [{}, {}] weights need {} values each and a {}x{} Hessian", rows, cols,
             rows * cols, cols, cols);
  return quadratic_forms(w, w_hat, rows, cols, hessian);
}

namespace {

class CpuCalibrationMath final : public CalibrationMath {
 public:
  std::string name() const override { return "cpu"; }

 protected:
  void multiply(std::span<float> out, std::span<const float> x, int64_t tokens, std::span<const float> w,
                int64_t rows, int64_t cols) override {
    const WeightMatrix view{
        .name = "calibration", .dtype = DType::F32, .data = w.data(), .rows = rows, .cols = cols};
    cpu::matmul(out.data(), x.data(), tokens, view);
  }

  std::vector<float> gram(std::span<const float> x, int64_t tokens, int64_t cols) override {
    HessianAccumulator acc(cols);
    acc.add(x.data(), tokens);
    return acc.hessian();
  }

  OutputError quadratic_forms(std::span<const float> w, std::span<const float> w_hat, int64_t rows,
                              int64_t cols, std::span<const float> hessian) override {
    return hessian_output_error(w, w_hat, rows, cols, hessian);
  }
};

}  // namespace

std::unique_ptr<CalibrationMath> cpu_calibration_math() {
  return std::make_unique<CpuCalibrationMath>();
}

#if !QLLM_HAVE_CUDA
std::unique_ptr<CalibrationMath> cuda_calibration_math() {
  throw Error("the GPU calibration math needs a CUDA build of qllm (this one is CPU-only)");
}
#endif

}  // namespace qllm
