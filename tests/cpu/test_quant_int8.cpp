// LLM.int8() CPU reference: rounding, error bounds, outlier columns, and the decomposed GEMM.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "qllm/error.h"
#include "qllm/int8.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::fresh_seed;

std::vector<float> normal(size_t n, Rng& rng, double stddev = 1.0) {
  std::vector<float> v(n);
  fill_normal(std::span<float>(v), rng, 0.0, stddev);
  return v;
}

TEST(Int8Quantize, KnownValuesAndTies) {
  // absmax 127: the step is exactly 1, so q = round-half-even(x).
  const std::vector<float> x = {127.0f, -63.5f, 0.5f, 1.5f, 2.5f, -0.5f, 126.5f, -127.0f};
  const Int8Rows q = quantize_int8_rows_ref(x, 1, 8);
  EXPECT_EQ(q.absmax[0], 127.0f);
  const int expected[] = {127, -64, 0, 2, 2, 0, 126, -127};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(q.values[i], expected[i]) << "x=" << x[i];
}

TEST(Int8Quantize, ErrorAtMostHalfAStep) {
  Rng rng(fresh_seed());
  const int64_t rows = 13, cols = 300;
  const auto x = normal(static_cast<size_t>(rows * cols), rng, 3.0);
  const Int8Rows q = quantize_int8_rows_ref(x, rows, cols);
  const auto back = dequantize_int8_rows_ref(q);
  for (int64_t r = 0; r < rows; ++r) {
    const float step = q.absmax[static_cast<size_t>(r)] / 127.0f;
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = static_cast<size_t>(r * cols + c);
      ASSERT_LE(std::fabs(x[i] - back[i]), step * (0.5f + 1e-5f)) << "row " << r << " col " << c;
    }
  }
}

TEST(Int8Quantize, ZeroRowsAndSkippedColumns) {
  std::vector<float> x(2 * 4, 0.0f);
  x[4] = 100.0f;  // row 1, column 0: skipped below, so it neither sets the absmax nor is stored
  x[5] = 2.0f;
  x[6] = -1.0f;
  const std::vector<uint8_t> skip = {1, 0, 0, 0};
  const Int8Rows q = quantize_int8_rows_ref(x, 2, 4, skip);
  EXPECT_EQ(q.absmax[0], 0.0f);
  for (int c = 0; c < 4; ++c) EXPECT_EQ(q.values[c], 0);
  EXPECT_EQ(q.absmax[1], 2.0f);
  EXPECT_EQ(q.values[4], 0);
  EXPECT_EQ(q.values[5], 127);
  EXPECT_EQ(q.values[6], -64);  // -1 * 63.5 = -63.5: ties to even
}

TEST(Int8Quantize, OutlierColumns) {
  std::vector<float> x(3 * 5, 1.0f);
  x[1 * 5 + 3] = -6.0f;  // exactly the threshold counts
  x[2 * 5 + 0] = 5.99f;
  EXPECT_EQ(outlier_columns_ref(x, 3, 5, 6.0f), (std::vector<uint8_t>{0, 0, 0, 1, 0}));
  EXPECT_EQ(outlier_columns_ref(x, 3, 5, 0.0f), (std::vector<uint8_t>(5, 0)));
  EXPECT_EQ(outlier_columns_ref(x, 3, 5, std::numeric_limits<float>::infinity()),
            (std::vector<uint8_t>(5, 0)));
}

TEST(Int8Quantize, BadInput) {
  std::vector<float> x(2 * 3, 1.0f);
  x[4] = std::numeric_limits<float>::quiet_NaN();
  try {
    quantize_int8_rows_ref(x, 2, 3);
    FAIL() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1, column 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(quantize_int8_rows_ref(x, 2, 4), Error);
  EXPECT_THROW(quantize_int8_rows_ref(x, 0, 6), Error);
}

// Without outliers the decomposed GEMM is exactly the product of the dequantized operands.
TEST(Int8Gemm, ReferenceEqualsDequantizedProduct) {
  Rng rng(fresh_seed());
  const int64_t m = 7, n = 33, k = 96;
  const auto x = normal(static_cast<size_t>(m * k), rng);
  const Int8Rows w = quantize_int8_rows_ref(normal(static_cast<size_t>(n * k), rng, 0.02), n, k);
  const Int8Rows xq = quantize_int8_rows_ref(x, m, k);
  const auto y = gemm_int8_ref(x, m, w, kDefaultOutlierThreshold);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double expected = 0;
      for (int64_t i = 0; i < k; ++i) {
        expected += static_cast<double>(xq.values[r * k + i]) * xq.absmax[r] / 127.0 *
                    (static_cast<double>(w.values[c * k + i]) * w.absmax[c] / 127.0);
      }
      ASSERT_NEAR(y[r * n + c], expected, 1e-9 * (1 + std::fabs(expected)));
    }
  }
}

// LLM.int8()'s point: a few large activation columns ruin per-row int8 quantization of X; taking them out and
// computing them in 16 bits brings the result back near the bf16 product.
TEST(Int8Gemm, OutlierDecompositionIsCloserToTheBf16Product) {
  Rng rng(fresh_seed());
  const int64_t m = 16, n = 64, k = 512;
  auto x = normal(static_cast<size_t>(m * k), rng);
  for (int64_t r = 0; r < m; ++r) {
    x[r * k + 17] = static_cast<float>(40.0 * (rng.uniform() - 0.5));  // two planted outlier columns
    x[r * k + 300] = static_cast<float>(25.0 + rng.uniform());
  }
  const auto wf = normal(static_cast<size_t>(n * k), rng, 0.02);
  const Int8Rows w = quantize_int8_rows_ref(wf, n, k);
  auto rel_err = [&](const std::vector<double>& y) {
    double diff = 0, norm = 0;
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t c = 0; c < n; ++c) {
        double exact = 0;
        for (int64_t i = 0; i < k; ++i) exact += static_cast<double>(x[r * k + i]) * wf[c * k + i];
        diff += (y[r * n + c] - exact) * (y[r * n + c] - exact);
        norm += exact * exact;
      }
    }
    return std::sqrt(diff / norm);
  };
  Int8GemmStats stats;
  const double with = rel_err(gemm_int8_ref(x, m, w, 6.0f, &stats));
  const double without = rel_err(gemm_int8_ref(x, m, w, std::numeric_limits<float>::infinity()));
  EXPECT_EQ(stats.outlier_columns, 2);
  EXPECT_LT(with, 0.02);           // int8 weights alone: ~0.5-1%
  EXPECT_GT(without, 3.0 * with);  // the outliers' row scales wipe out the small activations
}

}  // namespace
}  // namespace qllm
