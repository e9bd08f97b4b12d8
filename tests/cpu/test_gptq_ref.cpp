// The CPU reference GPTQ (quant/gptq_ref.h): its pieces against plain definitions (the Hessian, the inverse
// factor, a brute-force greedy OBS loop), its invariants (identity Hessian = round to nearest bit for bit,
// block size changes no bit) and its purpose (a lower output error on calibration inputs than round to
// nearest, for every scheme). Sizes are tiny: the whole file runs in well under a second.
#include <gtest/gtest.h>

#include <cmath>

#include "quant/gptq_ref.h"
#include "quant/int4_groups.h"
#include "tests/support/gptq_test_support.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::correlated_inputs;
using testing::error_of;
using testing::hessian_of;

std::vector<Int4Scheme> all_schemes(int64_t cols) {
  std::vector<Int4Scheme> out;
  for (const bool zp : {false, true}) {
    out.push_back({.granularity = Granularity::Global, .zero_point = zp});
    out.push_back({.granularity = Granularity::Rowwise, .zero_point = zp});
    for (const int64_t g : {int64_t{16}, int64_t{32}, int64_t{48}, cols * 2}) {
      out.push_back({.granularity = Granularity::Groupwise, .group_size = g, .zero_point = zp});
    }
  }
  return out;
}

std::vector<float> identity(int64_t dim, float diag = 1.0f) {
  std::vector<float> h(static_cast<size_t>(dim * dim), 0.0f);
  for (int64_t i = 0; i < dim; ++i) h[i * dim + i] = diag;
  return h;
}

TEST(GptqRef, HessianIsTwiceTheMeanOuterProduct) {
  Rng rng(1);
  const int64_t dim = 5, tokens = 7;
  const auto x = testing::random_normal<float>(tokens * dim, rng);
  HessianAccumulator acc(dim);
  acc.add(x.data(), 3);  // in two batches: the mean is over all rows
  acc.add(x.data() + 3 * dim, tokens - 3);
  const auto h = acc.hessian();
  for (int64_t i = 0; i < dim; ++i) {
    for (int64_t j = 0; j < dim; ++j) {
      double s = 0;
      for (int64_t t = 0; t < tokens; ++t) s += static_cast<double>(x[t * dim + i]) * x[t * dim + j];
      EXPECT_NEAR(h[i * dim + j], 2.0 * s / tokens, 1e-5) << i << "," << j;
    }
  }
  EXPECT_EQ(acc.samples(), tokens);
}

TEST(GptqRef, InverseFactorIsTheUpperCholeskyOfTheInverse) {
  Rng rng(2);
  const int64_t dim = 12;
  const auto h = hessian_of(correlated_inputs(40, dim, rng), dim);
  const GptqPrepared p = gptq_prepare(h, dim, {});
  const auto u = gptq_inverse_factor_ref(p);
  // U^T U H = I, U upper with a positive diagonal.
  for (int64_t i = 0; i < dim; ++i) {
    EXPECT_GT(u[i * dim + i], 0.0f);
    for (int64_t j = 0; j < i; ++j) EXPECT_EQ(u[i * dim + j], 0.0f);
  }
  for (int64_t i = 0; i < dim; ++i) {
    for (int64_t j = 0; j < dim; ++j) {
      double s = 0;
      for (int64_t k = 0; k < dim; ++k) {
        double uu = 0;  // (U^T U)[i][k]
        for (int64_t m = 0; m < dim; ++m) uu += static_cast<double>(u[m * dim + i]) * u[m * dim + k];
        s += uu * p.hessian[k * dim + j];
      }
      EXPECT_NEAR(s, i == j ? 1.0 : 0.0, 1e-4) << i << "," << j;
    }
  }
}

// With an identity (or any diagonal) Hessian no error is fed forward: GPTQ is round to nearest, bit for bit,
// scale search included.
TEST(GptqRef, DiagonalHessianGivesRoundToNearestBitForBit) {
  Rng rng(testing::fresh_seed());
  const int64_t rows = 6, cols = 80;
  const auto w = testing::random_normal<float>(rows * cols, rng);
  for (Int4Scheme s : all_schemes(cols)) {
    for (const ScaleSearch search : {ScaleSearch::None, ScaleSearch::Mse}) {
      s.search = search;
      SCOPED_TRACE(s.describe());
      const Int4Matrix rtn = quantize_int4_ref(w, rows, cols, s);
      const Int4Matrix gptq = gptq_ref(w, rows, cols, identity(cols, 3.0f), s);
      EXPECT_EQ(gptq.packed, rtn.packed);
      EXPECT_EQ(gptq.scales, rtn.scales);
      EXPECT_EQ(gptq.zeros, rtn.zeros);
    }
  }
}

// Lazy batches only defer updates: every weight still sees its updates in the same order, so any block size
// (also ones that cut groups) gives the same bits.
TEST(GptqRef, BlockSizeChangesNoBit) {
  Rng rng(testing::fresh_seed());
  const int64_t rows = 5, cols = 100;
  const auto w = testing::random_normal<float>(rows * cols, rng);
  const auto h = hessian_of(correlated_inputs(200, cols, rng), cols);
  for (const Int4Scheme& s : all_schemes(cols)) {
    SCOPED_TRACE(s.describe());
    const Int4Matrix one = gptq_ref(w, rows, cols, h, s, {.block_size = 1});
    for (const int64_t block : {7, 32, 128}) {
      const Int4Matrix blocked = gptq_ref(w, rows, cols, h, s, {.block_size = block});
      EXPECT_EQ(blocked.packed, one.packed) << "block " << block;
      EXPECT_EQ(blocked.scales, one.scales) << "block " << block;
    }
  }
}

// The greedy optimal-brain-surgeon loop written from its definition: after quantizing column i, the columns F
// not yet quantized move by -err / [H_F^-1]_ii * H_F^-1[:, i], with H_F^-1 the inverse of H restricted to F,
// formed explicitly (Gauss-Jordan, double). GPTQ's Cholesky rows are the same numbers, computed once.
std::vector<uint8_t> brute_force_nibbles(const std::vector<float>& w, int64_t rows, int64_t cols,
                                         const GptqPrepared& p, const Int4Scheme& s) {
  std::vector<uint8_t> nibbles(static_cast<size_t>(rows * cols));
  const GroupLayout layout = validate_int4_shape(rows, cols, s);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> row(w.begin() + r * cols, w.begin() + (r + 1) * cols);
    int4::GroupParams params{};
    for (int64_t i = 0; i < cols; ++i) {
      const int64_t n = cols - i;  // F = [i, cols)
      std::vector<double> a(static_cast<size_t>(n * 2 * n), 0.0);
      for (int64_t x = 0; x < n; ++x) {
        for (int64_t y = 0; y < n; ++y) a[x * 2 * n + y] = p.hessian[(i + x) * cols + i + y];
        a[x * 2 * n + n + x] = 1.0;
      }
      for (int64_t c = 0; c < n; ++c) {  // SPD: no pivoting needed
        const double piv = a[c * 2 * n + c];
        for (int64_t y = 0; y < 2 * n; ++y) a[c * 2 * n + y] /= piv;
        for (int64_t x = 0; x < n; ++x) {
          if (x == c) continue;
          const double f = a[x * 2 * n + c];
          for (int64_t y = 0; y < 2 * n; ++y) a[x * 2 * n + y] -= f * a[c * 2 * n + y];
        }
      }
      auto inv = [&](int64_t x, int64_t y) { return a[x * 2 * n + n + y]; };
      const int64_t g = layout.group_of(r, i);
      if (i == 0 || (s.granularity == Granularity::Groupwise && i % s.group_size == 0)) {
        std::vector<float> group(static_cast<size_t>(layout.size(g)));
        for (size_t k = 0; k < group.size(); ++k) group[k] = static_cast<float>(row[i + k]);
        params = int4::choose_group_params(group, s);
      }
      const uint8_t q = int4::quantize_value(static_cast<float>(row[i]), params);
      nibbles[r * cols + i] = q;
      const double err = row[i] - int4::dequantize_value(q, params.scale, params.zero);
      for (int64_t x = 1; x < n; ++x) row[i + x] -= err / inv(0, 0) * inv(x, 0);
    }
  }
  return nibbles;
}

TEST(GptqRef, MatchesBruteForceGreedyObs) {
  Rng rng(20261205);  // fixed: a near-tie between float and double rounding would flip a nibble
  const int64_t rows = 4, cols = 24;
  const auto w = testing::random_normal<float>(rows * cols, rng);
  const auto h = hessian_of(correlated_inputs(64, cols, rng), cols);
  const GptqPrepared p = gptq_prepare(h, cols, {});
  for (const Int4Scheme s :
       {Int4Scheme{.granularity = Granularity::Rowwise},
        Int4Scheme{.granularity = Granularity::Groupwise, .group_size = 8},
        Int4Scheme{.granularity = Granularity::Groupwise, .group_size = 10, .zero_point = true}}) {
    SCOPED_TRACE(s.describe());
    const Int4Matrix m = gptq_ref(w, rows, cols, h, s);
    const auto expected = brute_force_nibbles(w, rows, cols, p, s);
    int64_t differ = 0;
    for (int64_t i = 0; i < rows * cols; ++i) differ += m.nibble(i) != expected[i];
    EXPECT_EQ(differ, 0);
  }
}

// GPTQ's purpose: on its calibration inputs the layer's output error is below round to nearest's, for every
// scheme, with and without act order.
TEST(GptqRef, OutputErrorBelowRoundToNearestForEveryScheme) {
  Rng rng(testing::fresh_seed());
  const int64_t rows = 16, cols = 96, tokens = 256;
  const auto w = testing::random_normal<float>(rows * cols, rng);
  const auto h = hessian_of(correlated_inputs(tokens, cols, rng), cols);
  for (const Int4Scheme& s : all_schemes(cols)) {
    SCOPED_TRACE(s.describe());
    const double rtn =
        gptq_output_error(w, dequantize_int4_ref(quantize_int4_ref(w, rows, cols, s)), rows, cols, h);
    for (const bool act_order : {false, true}) {
      const Int4Matrix q = gptq_ref(w, rows, cols, h, s, {.act_order = act_order});
      const double gptq = gptq_output_error(w, dequantize_int4_ref(q), rows, cols, h);
      EXPECT_LT(gptq, 0.9 * rtn) << "act_order " << act_order << ": gptq " << gptq << " rtn " << rtn;
      EXPECT_EQ(q.scales.size(), validate_int4_shape(rows, cols, s).num_groups);
    }
  }
}

// Act order with static groups: groups are chosen from the original weights, so each group's scale is round
// to nearest's (GROUPWISE included) and only the nibbles move.
TEST(GptqRef, ActOrderKeepsStaticGroupScales) {
  Rng rng(testing::fresh_seed());
  const int64_t rows = 4, cols = 64;
  const auto w = testing::random_normal<float>(rows * cols, rng);
  const auto h = hessian_of(correlated_inputs(128, cols, rng), cols);
  const Int4Scheme s{.granularity = Granularity::Groupwise, .group_size = 16, .zero_point = true};
  const Int4Matrix q = gptq_ref(w, rows, cols, h, s, {.act_order = true});
  const Int4Matrix rtn = quantize_int4_ref(w, rows, cols, s);
  EXPECT_EQ(q.scales, rtn.scales);
  EXPECT_EQ(q.zeros, rtn.zeros);
  EXPECT_NE(q.packed, rtn.packed);
}

// Columns whose input is always zero have H_ii = 0: they are given H_ii = 1 and zero weights (GPTQ's rule).
TEST(GptqRef, DeadColumnsAreZeroedNotNan) {
  Rng rng(testing::fresh_seed());
  const int64_t rows = 3, cols = 16, tokens = 32;
  auto x = correlated_inputs(tokens, cols, rng);
  for (int64_t t = 0; t < tokens; ++t) x[t * cols + 5] = 0.0f;
  const auto h = hessian_of(x, cols);
  const auto w = testing::random_normal<float>(rows * cols, rng);
  const Int4Scheme s{.granularity = Granularity::Groupwise, .group_size = 16};
  const Int4Matrix q = gptq_ref(w, rows, cols, h, s);
  const auto back = dequantize_int4_ref(q);
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_EQ(back[r * cols + 5], 0.0f);
    for (int64_t c = 0; c < cols; ++c) EXPECT_TRUE(std::isfinite(back[r * cols + c]));
  }
}

TEST(GptqRef, ErrorsNameTheProblem) {
  const std::vector<float> w(8 * 4, 1.0f);
  const Int4Scheme s{.granularity = Granularity::Rowwise};
  EXPECT_NE(error_of([&] { gptq_ref(w, 8, 4, identity(6), s); }).find("needs 16 values"), std::string::npos);
  // Rank one and no dampening: not positive definite.
  const std::vector<float> rank_one(16, 1.0f);
  EXPECT_NE(error_of([&] { gptq_ref(w, 8, 4, rank_one, s, {.percdamp = 0}); }).find("not positive definite"),
            std::string::npos);
  std::vector<float> nan_w = w;
  nan_w[5] = NAN;
  EXPECT_NE(error_of([&] { gptq_ref(nan_w, 8, 4, identity(4), s); }).find("row 1, column 1"),
            std::string::npos);
  EXPECT_NE(error_of([&] { HessianAccumulator(3).hessian(); }).find("no calibration inputs"),
            std::string::npos);
}

}  // namespace
}  // namespace qllm
