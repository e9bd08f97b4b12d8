// INT4 groups that do not divide K (docs/FORMATS.md, "Groups"): the last group of each row is partial and is
// quantized from its own weights by the same rules as a whole group; whole groups keep the flat layout.
#include <gtest/gtest.h>

#include <cmath>

#include "qllm/quant.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::fresh_seed;

struct Case {
  int64_t rows, cols, g;
};
// SmolLM2-135M (K = 576 with g128), the `small` preset's K = 192 and 320 with g128, and a short row.
constexpr Case kCases[] = {{64, 576, 128}, {192, 320, 128}, {16, 192, 128}, {8, 100, 32}, {5, 34, 16}};

std::vector<Int4Scheme> schemes(int64_t g) {
  std::vector<Int4Scheme> out;
  for (const bool zp : {false, true}) {
    for (const ScaleSearch search : {ScaleSearch::None, ScaleSearch::Mae, ScaleSearch::Mse}) {
      for (const DType scale : {DType::F16, DType::BF16}) {
        out.push_back({.granularity = Granularity::Groupwise,
                       .group_size = g,
                       .zero_point = zp,
                       .scale_dtype = scale,
                       .search = search});
      }
    }
  }
  return out;
}

std::vector<float> weights(int64_t count, Rng& rng) {
  std::vector<float> w(static_cast<size_t>(count));
  for (auto& v : w) v = static_cast<float>(rng.normal());
  return w;
}

TEST(Int4PartialGroups, LayoutCountsAndRanges) {
  const Int4Scheme s{.granularity = Granularity::Groupwise, .group_size = 128};
  const GroupLayout l = validate_int4_shape(64, 576, s);
  EXPECT_EQ(l.groups_per_row, 5);
  EXPECT_EQ(l.num_groups, 64 * 5);
  EXPECT_FALSE(l.contiguous());
  EXPECT_EQ(l.first_flat(4), 512);  // row 0's partial group
  EXPECT_EQ(l.size(4), 64);
  EXPECT_EQ(l.first_flat(5), 576);  // row 1 starts a new group
  EXPECT_EQ(l.size(5), 128);
  EXPECT_EQ(l.group_of(1, 575), 9);
  EXPECT_EQ(l.row_of(9), 1);
  // A group larger than K: one partial group per row.
  const GroupLayout big =
      validate_int4_shape(3, 64, {.granularity = Granularity::Groupwise, .group_size = 128});
  EXPECT_EQ(big.num_groups, 3);
  EXPECT_EQ(big.size(2), 64);
  // Whole groups: group i is the flat range [i * g, (i + 1) * g), as before partial groups existed.
  const GroupLayout whole = validate_int4_shape(4, 256, s);
  EXPECT_TRUE(whole.contiguous());
  for (int64_t flat = 0; flat < 4 * 256; ++flat) ASSERT_EQ(whole.group_of_flat(flat), flat / 128);
  for (int64_t g = 0; g < whole.num_groups; ++g) ASSERT_EQ(whole.first_flat(g), g * 128);
}

// Every group, partial ones included, gets exactly the bits that quantizing its weights alone (as a one-row
// ROWWISE matrix) gives: the same range, the same scale search, the same rounding.
TEST(Int4PartialGroups, EachGroupIsQuantizedFromItsOwnWeights) {
  Rng rng(fresh_seed());
  for (const Case c : kCases) {
    const std::vector<float> w = weights(c.rows * c.cols, rng);
    for (const Int4Scheme& scheme : schemes(c.g)) {
      SCOPED_TRACE(fmt::format("[{}, {}] {}", c.rows, c.cols, scheme.describe()));
      const Int4Matrix m = quantize_int4_ref(w, c.rows, c.cols, scheme);
      const GroupLayout l = m.layout();
      ASSERT_EQ(m.scales.size(), static_cast<size_t>(c.rows * ((c.cols + c.g - 1) / c.g)));
      ASSERT_EQ(m.zeros.size(), scheme.zero_point ? m.scales.size() : 0u);
      ASSERT_EQ(m.packed.size(), static_cast<size_t>(c.rows * c.cols / 2));
      // Rows 0, 1 and the last: enough to see every position of a group, partial ones included.
      for (const int64_t row : {int64_t{0}, int64_t{1}, c.rows - 1}) {
        for (int64_t i = 0; i < l.groups_per_row; ++i) {
          const int64_t g = row * l.groups_per_row + i, begin = l.first_flat(g), size = l.size(g);
          ASSERT_EQ(begin, row * c.cols + i * c.g);
          ASSERT_EQ(size, std::min(c.g, c.cols - i * c.g));
          Int4Scheme alone = scheme;
          alone.granularity = Granularity::Rowwise;
          const Int4Matrix single = quantize_int4_ref(
              std::span<const float>(w).subspan(static_cast<size_t>(begin), static_cast<size_t>(size)), 1,
              size, alone);
          ASSERT_EQ(m.scales[g], single.scales[0]) << "group " << g;
          ASSERT_EQ(m.zero(g), single.zero(0)) << "group " << g;
          for (int64_t j = 0; j < size; ++j)
            ASSERT_EQ(m.nibble(begin + j), single.nibble(j)) << "group " << g;
        }
      }
    }
  }
}

// The reconstruction reads each weight's own group: within half a step of it (plain scales).
TEST(Int4PartialGroups, DequantizeUsesTheRowGroups) {
  Rng rng(fresh_seed());
  for (const Case c : kCases) {
    const std::vector<float> w = weights(c.rows * c.cols, rng);
    for (const bool zp : {false, true}) {
      const Int4Scheme scheme{.granularity = Granularity::Groupwise, .group_size = c.g, .zero_point = zp};
      SCOPED_TRACE(fmt::format("[{}, {}] {}", c.rows, c.cols, scheme.describe()));
      const Int4Matrix m = quantize_int4_ref(w, c.rows, c.cols, scheme);
      const std::vector<float> back = dequantize_int4_ref(m);
      for (int64_t row = 0; row < c.rows; ++row) {
        for (int64_t col = 0; col < c.cols; ++col) {
          const int64_t flat = row * c.cols + col, g = row * ((c.cols + c.g - 1) / c.g) + col / c.g;
          ASSERT_EQ(back[flat],
                    (static_cast<float>(m.nibble(flat)) - static_cast<float>(m.zero(g))) * m.scale(g));
          const float bound = m.scale(g) * (zp ? 0.5f + 15.0f * 0x1p-11f : 0.5f + 1e-5f);
          ASSERT_LE(std::fabs(w[flat] - back[flat]), bound) << "row " << row << " col " << col;
        }
      }
      // The error table's figures: finite, and the compression counts one scale per row group.
      const QuantError e = measure_error(w, back);
      EXPECT_TRUE(std::isfinite(e.mae) && std::isfinite(e.max_abs_err) && e.max_abs_err > 0);
      const double stored = static_cast<double>(c.rows * c.cols / 2 + m.scales.size() * 2 + m.zeros.size());
      EXPECT_DOUBLE_EQ(m.compression(DType::F16), 2.0 * static_cast<double>(c.rows * c.cols) / stored);
    }
  }
}

// A group size of at least K is one group per row: the same bits as ROWWISE.
TEST(Int4PartialGroups, GroupLargerThanKIsRowwise) {
  Rng rng(fresh_seed());
  const std::vector<float> w = weights(6 * 96, rng);
  const Int4Matrix big =
      quantize_int4_ref(w, 6, 96, {.granularity = Granularity::Groupwise, .group_size = 128});
  const Int4Matrix row = quantize_int4_ref(w, 6, 96, {.granularity = Granularity::Rowwise});
  EXPECT_EQ(big.packed, row.packed);
  EXPECT_EQ(big.scales, row.scales);
}

}  // namespace
}  // namespace qllm
