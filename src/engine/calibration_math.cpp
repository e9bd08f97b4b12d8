#include "engine/calibration_math.h"

#include <cmath>
#include <vector>

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

void CalibrationMath::attention(std::vector<float>& out, std::span<const float> q, std::span<const float> k,
                                std::span<const float> v, std::span<const int64_t> window_start,
                                int64_t heads, int64_t kv_heads, int64_t head_dim) {
  QLLM_CHECK(heads > 0 && kv_heads > 0 && heads % kv_heads == 0 && head_dim > 0 && !window_start.empty() &&
                 window_start.front() == 0,
             "calibration attention: {} heads over {} key/value heads of {} values", heads, kv_heads,
             head_dim);
  const int64_t tokens = window_start.back();
  for (size_t w = 0; w + 1 < window_start.size(); ++w) {
    QLLM_CHECK(window_start[w] <= window_start[w + 1],
               "calibration attention: window {} ends before it starts", w);
  }
  QLLM_CHECK(static_cast<int64_t>(q.size()) == tokens * heads * head_dim &&
                 static_cast<int64_t>(k.size()) == tokens * kv_heads * head_dim && v.size() == k.size(),
             "calibration attention: q, k, v hold {}, {}, {} values for {} tokens", q.size(), k.size(),
             v.size(), tokens);
  out.assign(q.size(), 0.0f);
  attend(out, q, k, v, window_start, heads, kv_heads, head_dim);
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

  // The reference engine's loops: per query and head, scores, softmax, weighted values (out starts at 0).
  void attend(std::span<float> out, std::span<const float> q, std::span<const float> k,
              std::span<const float> v, std::span<const int64_t> window_start, int64_t heads,
              int64_t kv_heads, int64_t hd) override {
    const int64_t tokens = window_start.back(), q_dim = heads * hd, kv_dim = kv_heads * hd;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    std::vector<int64_t> window_of(static_cast<size_t>(tokens));
    for (size_t w = 0; w + 1 < window_start.size(); ++w) {
      for (int64_t t = window_start[w]; t < window_start[w + 1]; ++t) window_of[t] = window_start[w];
    }
#pragma omp parallel
    {
      std::vector<float> scores(static_cast<size_t>(tokens));
#pragma omp for schedule(dynamic, 8)
      for (int64_t th = 0; th < tokens * heads; ++th) {
        const int64_t t = th / heads, h = th % heads, first = window_of[t];
        const int64_t kv_off = (h / (heads / kv_heads)) * hd;
        const float* qv = &q[t * q_dim + h * hd];
        for (int64_t p = first; p <= t; ++p)
          scores[p - first] = cpu::dot(qv, &k[p * kv_dim + kv_off], hd) * scale;
        cpu::softmax(scores.data(), t - first + 1);
        float* o = &out[t * q_dim + h * hd];
        for (int64_t p = first; p <= t; ++p) {
          for (int64_t d = 0; d < hd; ++d) o[d] += scores[p - first] * v[p * kv_dim + kv_off + d];
        }
      }
    }
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
