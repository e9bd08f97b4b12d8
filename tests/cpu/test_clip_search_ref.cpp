// Output-aware clipping (quant/clip_search_ref.h): rounding with given group parameters reproduces round to
// nearest when given its parameters; every group's output error is at most the unclipped one's, and below it
// somewhere on correlated inputs; GPTQ takes the groups as static ones; bad shapes and NaN weights are errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "quant/clip_search_ref.h"
#include "quant/gptq_ref.h"
#include "quant/int4_groups.h"
#include "tests/support/gptq_test_support.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;

// e^T H_gg e of every group (block-diagonal part of the output error), for W and its quantization.
std::vector<double> group_errors(const std::vector<float>& w, const Int4Matrix& q,
                                 const std::vector<float>& h, int64_t cols) {
  const GroupLayout layout = q.layout();
  const std::vector<float> v = dequantize_int4_ref(q);
  std::vector<double> out(static_cast<size_t>(layout.num_groups));
  for (int64_t g = 0; g < layout.num_groups; ++g) {
    const int64_t first = layout.first_flat(g), n = layout.size(g), col0 = first % cols;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        sum += (w[first + i] - v[first + i]) * static_cast<double>(h[(col0 + i) * cols + col0 + j]) *
               (w[first + j] - v[first + j]);
      }
    }
    out[g] = sum;
  }
  return out;
}

TEST(ClipSearchRef, GivenParametersReproduceRoundToNearest) {
  Rng rng(5);
  const int64_t rows = 6, cols = 40;
  const auto w = testing::random_normal<float>(rows * cols, rng);
  for (const Int4Scheme& scheme :
       {Int4Scheme{.granularity = Granularity::Groupwise, .group_size = 16},
        Int4Scheme{.granularity = Granularity::Groupwise, .group_size = 16, .zero_point = true},
        Int4Scheme{.granularity = Granularity::Rowwise}, Int4Scheme{.granularity = Granularity::Global}}) {
    const GroupLayout layout = validate_int4_shape(rows, cols, scheme);
    std::vector<int4::GroupParams> params;
    for (int64_t g = 0; g < layout.num_groups; ++g) {
      params.push_back(int4::choose_group_params(
          std::span<const float>(w).subspan(layout.first_flat(g), layout.size(g)), scheme));
    }
    const Int4Matrix want = quantize_int4_ref(w, rows, cols, scheme);
    const Int4Matrix got = quantize_int4_with_params(w, rows, cols, scheme, params);
    EXPECT_EQ(got.packed, want.packed);
    EXPECT_EQ(got.scales, want.scales);
    EXPECT_EQ(got.zeros, want.zeros);
  }
}

TEST(ClipSearchRef, NoGroupWorseThanUnclippedAndSomeBetter) {
  Rng rng(7);
  const int64_t rows = 24, cols = 72, tokens = 300;  // groups of 32: the last of each row partial (8)
  const auto x = testing::correlated_inputs(tokens, cols, rng);
  const auto h = testing::hessian_of(x, cols);
  auto w = testing::random_normal<float>(rows * cols, rng);
  for (int64_t r = 0; r < rows; ++r) w[r * cols + (r % cols)] *= 6.0f;  // an outlier per row: clipping pays
  for (const bool zero_point : {false, true}) {
    const Int4Scheme scheme{
        .granularity = Granularity::Groupwise, .group_size = 32, .zero_point = zero_point};
    const auto params = clip_search_ref(w, rows, cols, h, scheme);
    const Int4Matrix clipped = quantize_int4_with_params(w, rows, cols, scheme, params);
    const Int4Matrix plain = quantize_int4_ref(w, rows, cols, scheme);
    const auto e_clip = group_errors(w, clipped, h, cols), e_plain = group_errors(w, plain, h, cols);
    int better = 0;
    for (size_t g = 0; g < e_clip.size(); ++g) {
      ASSERT_LE(e_clip[g], e_plain[g] * (1 + 1e-9) + 1e-12) << "group " << g;
      better += e_clip[g] < e_plain[g] * 0.99;
    }
    EXPECT_GT(better, 0);
    // And the whole layer's output error (cross-group terms included) goes down.
    EXPECT_LT(gptq_output_error(w, dequantize_int4_ref(clipped), rows, cols, h),
              gptq_output_error(w, dequantize_int4_ref(plain), rows, cols, h));
  }
  // Rowwise and global: weighed by the diagonal; still never worse than unclipped on that measure.
  for (const Granularity g : {Granularity::Rowwise, Granularity::Global}) {
    const Int4Scheme scheme{.granularity = g};
    const auto params = clip_search_ref(w, rows, cols, h, scheme);
    ASSERT_EQ(static_cast<int64_t>(params.size()), validate_int4_shape(rows, cols, scheme).num_groups);
    const Int4Matrix clipped = quantize_int4_with_params(w, rows, cols, scheme, params);
    EXPECT_TRUE(std::isfinite(gptq_output_error(w, dequantize_int4_ref(clipped), rows, cols, h)));
  }
}

TEST(ClipSearchRef, GptqKeepsGivenGroupsStatic) {
  Rng rng(11);
  const int64_t rows = 8, cols = 48, tokens = 200;
  const auto x = testing::correlated_inputs(tokens, cols, rng);
  const auto h = testing::hessian_of(x, cols);
  const auto w = testing::random_normal<float>(rows * cols, rng);
  const Int4Scheme scheme{.granularity = Granularity::Groupwise, .group_size = 16};
  const auto params = clip_search_ref(w, rows, cols, h, scheme);
  for (const bool act_order : {false, true}) {
    const GptqPrepared p = gptq_prepare(h, cols, {.act_order = act_order});
    const auto u = gptq_inverse_factor_ref(p);
    const Int4Matrix q = gptq_quantize_ref(w, rows, cols, p, u, scheme, 128, params);
    for (size_t g = 0; g < params.size(); ++g) ASSERT_EQ(q.scales[g], params[g].scale_bits) << g;
    // GPTQ with those groups still fits the calibration inputs better than rounding with them.
    const Int4Matrix rounded = quantize_int4_with_params(w, rows, cols, scheme, params);
    EXPECT_LT(gptq_output_error(w, dequantize_int4_ref(q), rows, cols, h),
              gptq_output_error(w, dequantize_int4_ref(rounded), rows, cols, h));
  }
  const GptqPrepared p = gptq_prepare(h, cols, {});
  const auto u = gptq_inverse_factor_ref(p);
  EXPECT_NE(error_of([&] {
              gptq_quantize_ref(w, rows, cols, p, u, scheme, 128, std::span(params).first(3));
            }).find("3 fixed group parameters for 24 groups"),
            std::string::npos);
}

TEST(ClipSearchRef, ShapeAndValueErrors) {
  const std::vector<float> w(12, 1.0f), h(9, 0.0f);
  const Int4Scheme scheme{.granularity = Granularity::Groupwise, .group_size = 2};
  EXPECT_NE(error_of([&] { clip_search_ref(w, 3, 4, h, scheme); }).find("4x4 Hessian"), std::string::npos);
  EXPECT_NE(
      error_of([&] { quantize_int4_with_params(w, 3, 4, scheme, {}); }).find("0 group parameters for 6"),
      std::string::npos);
  std::vector<float> bad = w;
  bad[5] = std::nanf("");
  const std::vector<float> h4(16, 1.0f);
  EXPECT_NE(
      error_of([&] { clip_search_ref(bad, 3, 4, h4, scheme); }).find("weight at row 1, column 1 is nan"),
      std::string::npos);
}

}  // namespace
}  // namespace qllm
