// LLM.int8() CPU reference: vector-wise absmax quantization and the decomposed GEMM, plain loops.
#include <cmath>

#include "qllm/error.h"
#include "qllm/int8.h"
#include "quant/int8_math.h"

namespace qllm {

Int8Rows quantize_int8_rows_ref(std::span<const float> x, int64_t rows, int64_t cols,
                                std::span<const uint8_t> skip_columns) {
  QLLM_CHECK(rows > 0 && cols > 0, "int8 quantization: shape [{}, {}] must be positive", rows, cols);
  QLLM_CHECK(static_cast<int64_t>(x.size()) == rows * cols, "int8 quantization: {} values for shape [{}, {}]",
             x.size(), rows, cols);
  QLLM_CHECK(skip_columns.empty() || static_cast<int64_t>(skip_columns.size()) == cols,
             "int8 quantization: {} column flags for {} columns", skip_columns.size(), cols);
  Int8Rows q;
  q.rows = rows;
  q.cols = cols;
  q.values.resize(static_cast<size_t>(rows * cols));
  q.absmax.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x.data() + r * cols;
    float absmax = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      QLLM_CHECK(std::isfinite(row[c]), "int8 quantization: value at row {}, column {} is {}", r, c, row[c]);
      if (skip_columns.empty() || !skip_columns[c]) absmax = std::fmax(absmax, std::fabs(row[c]));
    }
    const float inv = int8q::inverse_step(absmax);
    for (int64_t c = 0; c < cols; ++c) {
      const bool skip = !skip_columns.empty() && skip_columns[c];
      q.values[static_cast<size_t>(r * cols + c)] = skip ? int8_t{0} : int8q::quantize(row[c], inv);
    }
    q.absmax[static_cast<size_t>(r)] = absmax;
  }
  return q;
}

std::vector<float> dequantize_int8_rows_ref(const Int8Rows& q) {
  std::vector<float> out(q.values.size());
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t c = 0; c < q.cols; ++c) {
      const size_t i = static_cast<size_t>(r * q.cols + c);
      out[i] = int8q::dequantize(q.values[i], q.absmax[static_cast<size_t>(r)]);
    }
  }
  return out;
}

std::vector<uint8_t> outlier_columns_ref(std::span<const float> x, int64_t rows, int64_t cols,
                                         float threshold) {
  std::vector<uint8_t> flags(static_cast<size_t>(cols), 0);
  if (!outliers_enabled(threshold)) return flags;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      if (std::fabs(x[static_cast<size_t>(r * cols + c)]) >= threshold) flags[static_cast<size_t>(c)] = 1;
    }
  }
  return flags;
}

std::vector<double> gemm_int8_ref(std::span<const float> x, int64_t m, const Int8Rows& w, float threshold,
                                  Int8GemmStats* stats) {
  const int64_t n = w.rows, k = w.cols;
  QLLM_CHECK(static_cast<int64_t>(x.size()) == m * k, "int8 GEMM: X holds {} values, [{}, {}] needs {}",
             x.size(), m, k, m * k);
  const std::vector<uint8_t> outliers = outlier_columns_ref(x, m, k, threshold);
  const Int8Rows xq = quantize_int8_rows_ref(x, m, k, outliers);
  std::vector<int64_t> outlier_list;
  for (int64_t c = 0; c < k; ++c) {
    if (outliers[static_cast<size_t>(c)]) outlier_list.push_back(c);
  }
  if (stats) stats->outlier_columns = static_cast<int64_t>(outlier_list.size());

  std::vector<double> y(static_cast<size_t>(m * n));
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t col = 0; col < n; ++col) {
    const int8_t* wrow = w.values.data() + col * k;
    for (int64_t row = 0; row < m; ++row) {
      const int8_t* xrow = xq.values.data() + row * k;
      int64_t acc = 0;  // exact, like the tensor cores' int32 accumulation
      for (int64_t i = 0; i < k; ++i) acc += static_cast<int64_t>(xrow[i]) * wrow[i];
      double value = static_cast<double>(acc) * xq.absmax[static_cast<size_t>(row)] *
                     w.absmax[static_cast<size_t>(col)] / (127.0 * 127.0);
      for (int64_t c : outlier_list) {
        value += static_cast<double>(x[static_cast<size_t>(row * k + c)]) *
                 int8q::dequantize(wrow[c], w.absmax[static_cast<size_t>(col)]);
      }
      y[static_cast<size_t>(row * n + col)] = value;
    }
  }
  return y;
}

}  // namespace qllm
