// AWQ-style scale search (quant/awq_ref.h): the scales' normalisation, the output error through the Hessian
// against the error computed on the inputs themselves, and a search that never does worse than round to
// nearest and gains where a few input channels are large.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "quant/awq_ref.h"
#include "tests/support/gptq_test_support.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;

TEST(AwqRef, ScalesAreOneAtAlphaZeroAndStraddleOne) {
  const std::vector<float> mean_abs = {0.5f, 2.0f, 8.0f, 0.0f};
  for (float s : awq_scales(mean_abs, 0.0)) EXPECT_EQ(s, 1.0f);
  const std::vector<float> s = awq_scales(mean_abs, 0.5);
  const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
  EXPECT_NEAR(static_cast<double>(*lo) * *hi, 1.0, 1e-6);
  EXPECT_LT(s[0], s[1]);  // larger inputs, larger scales
  EXPECT_LT(s[1], s[2]);
  EXPECT_GT(s[3], 0.0f);  // a dead channel is floored, never 0 (its norm weight is divided by it)
}

TEST(AwqRef, HessianOutputErrorIsTheErrorOnTheInputs) {
  Rng rng(3);
  const int64_t rows = 6, dim = 10, tokens = 40;
  const auto x = testing::random_normal<float>(tokens * dim, rng);
  const auto w = testing::random_normal<float>(rows * dim, rng);
  const auto v = testing::random_normal<float>(rows * dim, rng);
  double err = 0, ref = 0;  // ||X (W - V)^T||^2 and ||X W^T||^2, directly
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double y = 0, d = 0;
      for (int64_t k = 0; k < dim; ++k) {
        y += static_cast<double>(x[t * dim + k]) * w[r * dim + k];
        d += static_cast<double>(x[t * dim + k]) * (w[r * dim + k] - v[r * dim + k]);
      }
      err += d * d;
      ref += y * y;
    }
  }
  // The Hessian is (2 / n) X^T X: the same ratio, each sum scaled by 2 / n.
  const OutputError e = hessian_output_error(w, v, rows, dim, testing::hessian_of(x, dim));
  EXPECT_NEAR(e.error, 2.0 * err / tokens, 1e-4 * e.error);
  EXPECT_NEAR(e.reference, 2.0 * ref / tokens, 1e-4 * e.reference);
}

TEST(AwqRef, SearchNeverLosesToRoundToNearestAndGainsOnLargeChannels) {
  Rng rng(5);
  const int64_t dim = 128, rows = 48, tokens = 512;
  auto x = testing::correlated_inputs(tokens, dim, rng);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t k = 0; k < 4; ++k) x[t * dim + k * 29] *= 12.0f;  // four outlier channels
  }
  std::vector<float> mean_abs(static_cast<size_t>(dim), 0.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t k = 0; k < dim; ++k) mean_abs[k] += std::fabs(x[t * dim + k]) / tokens;
  }
  const auto h = testing::hessian_of(x, dim);
  const auto w1 = testing::random_normal<float>(rows * dim, rng);
  const auto w2 = testing::random_normal<float>(rows * dim, rng);
  for (const Int4Scheme scheme : {Int4Scheme{.granularity = Granularity::Groupwise, .group_size = 32},
                                  Int4Scheme{.granularity = Granularity::Rowwise}}) {
    SCOPED_TRACE(scheme.describe());
    const std::vector<AwqWeight> weights = {{w1, rows}, {w2, rows}};
    const AwqSearch r = awq_search_ref(mean_abs, h, dim, weights, scheme);
    EXPECT_LE(r.error, r.error_unscaled);
    EXPECT_GT(r.alpha, 0.0);
    EXPECT_LT(r.error, 0.9 * r.error_unscaled);
    ASSERT_EQ(static_cast<int64_t>(r.scales.size()), dim);
    EXPECT_GT(r.scales[29], r.scales[30]);  // the outlier channel is scaled up against its neighbour
  }
}

TEST(AwqRef, RejectsMismatchedShapes) {
  const std::vector<float> mean_abs(8, 1.0f), h(64, 0.0f), w(3 * 7, 1.0f);
  const std::vector<AwqWeight> weights = {{w, 3}};
  const Int4Scheme scheme{.granularity = Granularity::Rowwise};
  EXPECT_NE(error_of([&] { awq_search_ref(mean_abs, h, 8, weights, scheme); }).find("3 rows x 8 inputs"),
            std::string::npos);
  EXPECT_NE(error_of([&] { awq_search_ref(mean_abs, h, 9, weights, scheme); }).find("9 channels"),
            std::string::npos);
}

}  // namespace
}  // namespace qllm
