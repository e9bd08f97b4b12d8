// CPU reference W4A16 GEMM (the spec the kernels are tested against): reads the repacked bytes through the
// layout's address formula (W4A16Weights::nibble/scale/zero) and computes in double precision.
#include <vector>

#include "qllm/error.h"
#include "quant/float_ops.h"
#include "quant/w4a16_layout.h"

namespace qllm {

namespace {

double dequantize_one(const W4A16Weights& w, int64_t row, int64_t col, W4A16Precision precision) {
  const bool bf16 = w.layout.activation == DType::BF16;
  if (w.layout.min_offset) {
    // u * s + m is exact in double (a 4-bit integer times a 16-bit float, plus a 16-bit float).
    const double weight = static_cast<double>(w.nibble(row, col)) * w.scale(row, col) + w.min(row, col);
    if (precision == W4A16Precision::Exact) return weight;
    // ggml's f32 value (one rounding), then the tensor-core operand (dequant path: bit for bit).
    return fops::scale_bits_to_float(fops::float_to_scale_bits(static_cast<float>(weight), bf16), bf16);
  }
  const double q_minus_z = static_cast<double>(w.nibble(row, col)) - w.zero(row, col);
  const double weight = q_minus_z * w.scale(row, col);  // exact: a 5-bit integer times a 16-bit float
  if (precision == W4A16Precision::Exact) return weight;
  return fops::scale_bits_to_float(fops::float_to_scale_bits(static_cast<float>(weight), bf16), bf16);
}

}  // namespace

std::vector<double> dequantize_w4a16_ref(const W4A16Weights& w, W4A16Precision precision) {
  const W4A16Layout& l = w.layout;
  std::vector<double> out(static_cast<size_t>(l.n * l.k));
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < l.n; ++row) {
    for (int64_t col = 0; col < l.k; ++col)
      out[static_cast<size_t>(row * l.k + col)] = dequantize_one(w, row, col, precision);
  }
  return out;
}

double gemm_w4a16_ref_element(std::span<const float> x, const W4A16Weights& w, int64_t m, int64_t n,
                              W4A16Precision precision) {
  double sum = 0.0;
  for (int64_t col = 0; col < w.layout.k; ++col) {
    sum += static_cast<double>(x[static_cast<size_t>(m * w.layout.k + col)]) *
           dequantize_one(w, n, col, precision);
  }
  return sum;
}

std::vector<float> gemm_w4a16_ref(std::span<const float> x, int64_t m, const W4A16Weights& w,
                                  W4A16Precision precision) {
  const W4A16Layout& l = w.layout;
  QLLM_CHECK(static_cast<int64_t>(x.size()) == m * l.k, "X holds {} values, [{}, {}] needs {}", x.size(), m,
             l.k, m * l.k);
  const std::vector<double> weights = dequantize_w4a16_ref(w, precision);
  std::vector<float> y(static_cast<size_t>(m * l.n));
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < l.n; ++n) {
    const double* wrow = weights.data() + n * l.k;
    for (int64_t row = 0; row < m; ++row) {
      const float* xrow = x.data() + row * l.k;
      double sum = 0.0;
      for (int64_t col = 0; col < l.k; ++col) sum += static_cast<double>(xrow[col]) * wrow[col];
      y[static_cast<size_t>(row * l.n + n)] = static_cast<float>(sum);
    }
  }
  return y;
}

}  // namespace qllm
