// INT4 CPU reference: layout, rounding, error bounds, compression, search, edge cases and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "qllm/error.h"
#include "qllm/quant.h"
#include "quant/float_ops.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;
using testing::fresh_seed;
using testing::random_normal;

// The CPU rounding must match the device's __float2uint_rn (round half to even) on the whole range the
// quantizers use, halves included; the magic-number trick it uses breaks down above 2^22 if done naively.
TEST(FloatOps, RoundToU32IsRoundHalfToEven) {
  const float cases[] = {0.0f,        0.5f,        1.5f,       2.5f,       3.49999976f,
                         4194303.5f,  4194304.5f,  4194305.5f, 8388607.5f, 8388608.0f,
                         16777215.0f, 16777216.0f, 123456.5f,  6291456.5f};
  for (float x : cases) {
    EXPECT_EQ(fops::round_to_u32(x), static_cast<uint32_t>(std::nearbyint(x))) << x;
  }
  std::mt19937 rng(fresh_seed());
  std::uniform_real_distribution<float> dist(0.0f, 16777216.0f);
  for (int i = 0; i < 100000; ++i) {
    const float x = dist(rng);
    ASSERT_EQ(fops::round_to_u32(x), static_cast<uint32_t>(std::nearbyint(x))) << x;
  }
}

Int4Scheme groupwise(int64_t g, bool zero_point = false, ScaleSearch search = ScaleSearch::None) {
  return {.granularity = Granularity::Groupwise, .group_size = g, .zero_point = zero_point, .search = search};
}
Int4Scheme of(Granularity granularity, bool zero_point = false, ScaleSearch search = ScaleSearch::None) {
  return {.granularity = granularity, .zero_point = zero_point, .search = search};
}

std::vector<float> to_floats(const std::vector<Half>& w) {
  std::vector<float> out(w.size());
  for (size_t i = 0; i < w.size(); ++i) out[i] = to_float(w[i]);
  return out;
}

// Every scheme the sweeps below cover, for a matrix with `cols` columns.
std::vector<Int4Scheme> all_schemes(int64_t cols) {
  std::vector<Int4Scheme> schemes;
  for (bool zp : {false, true}) {
    for (ScaleSearch search : {ScaleSearch::None, ScaleSearch::Mse, ScaleSearch::Mae}) {
      schemes.push_back(of(Granularity::Global, zp, search));
      schemes.push_back(of(Granularity::Rowwise, zp, search));
      for (int64_t g : {16, 32, 64, 128, 4096}) {
        if (cols % g == 0) schemes.push_back(groupwise(g, zp, search));
      }
    }
  }
  return schemes;
}

TEST(Int4Pack, NibbleOrderIsLowNibbleFirst) {
  const std::vector<uint8_t> nibbles = {0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8};
  EXPECT_EQ(pack_nibbles_u8(nibbles), (std::vector<uint8_t>{0x21, 0x43, 0x65, 0x87}));
  EXPECT_EQ(pack_nibbles_u32(nibbles), (std::vector<uint32_t>{0x87654321u}));
}

TEST(Int4Pack, RandomNibblesRoundTripAndBothPackingsShareBytes) {
  Rng rng(fresh_seed());
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<uint8_t> nibbles(8 * (1 + rng.below(500)));
    for (auto& n : nibbles) n = static_cast<uint8_t>(rng.below(16));
    const auto bytes = pack_nibbles_u8(nibbles);
    const auto words = pack_nibbles_u32(nibbles);
    ASSERT_EQ(bytes.size(), nibbles.size() / 2);
    ASSERT_EQ(words.size(), nibbles.size() / 8);
    EXPECT_EQ(unpack_nibbles(std::span<const uint8_t>(bytes), static_cast<int64_t>(nibbles.size())), nibbles);
    EXPECT_EQ(unpack_nibbles(std::span<const uint32_t>(words), static_cast<int64_t>(nibbles.size())),
              nibbles);
    ASSERT_EQ(std::memcmp(bytes.data(), words.data(), bytes.size()), 0) << "u8 and u32 packings differ";
  }
}

TEST(Int4Pack, RejectsBadInput) {
  EXPECT_THROW(pack_nibbles_u8(std::vector<uint8_t>{1, 2, 3}), Error);
  EXPECT_THROW(pack_nibbles_u8(std::vector<uint8_t>{1, 16}), Error);
  EXPECT_THROW(pack_nibbles_u32(std::vector<uint8_t>{1, 2, 3, 4}), Error);
}

// Hand-computed: absmax 7 gives scale 1, so q = round-half-even(w) and the nibble is q + 8.
TEST(Int4Quantize, KnownValuesAndTies) {
  const std::vector<float> w = {1.0f,  -2.0f, 3.5f, 7.0f,  0.5f,  1.5f,  2.5f,  -0.5f,
                                -1.5f, -2.5f, 6.5f, -7.0f, 0.49f, 0.51f, -6.5f, 0.0f};
  const Int4Matrix m = quantize_int4_ref(w, 1, 16, groupwise(16));
  ASSERT_EQ(m.scales.size(), 1u);
  EXPECT_EQ(m.scales[0], 0x3c00) << "scale should be exactly 1.0";
  const int expected_q[] = {1, -2, 4, 7, 0, 2, 2, 0, -2, -2, 6, -7, 0, 1, -6, 0};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(m.nibble(i), expected_q[i] + 8) << "element " << i << " w=" << w[i];
  EXPECT_EQ(m.packed[0], (uint8_t)((1 + 8) | ((-2 + 8) << 4)));
  EXPECT_TRUE(m.zeros.empty());
}

TEST(Int4Quantize, AsymmetricKnownValues) {
  std::vector<float> w(16);
  for (int i = 0; i < 16; ++i) w[i] = 0.5f * static_cast<float>(i);  // min 0, max 7.5: s = 0.5, z = 0
  const Int4Matrix m = quantize_int4_ref(w, 1, 16, groupwise(16, true));
  EXPECT_EQ(m.scale(0), 0.5f);
  EXPECT_EQ(m.zero(0), 0);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(m.nibble(i), i);
  const auto back = dequantize_int4_ref(m);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(back[i], w[i]);
}

// With the plain scale every element is within half a step of its original, up to two roundings:
// w * (1/s) against w / s (a relative 1e-5 of the step), and, with a zero point, the fp16 rounding of the
// scale (relative 2^-11) accumulated over the 15 steps between the zero point and the top of the range,
// which can push the largest weight past q = 15.5 into the clamp.
TEST(Int4Quantize, ErrorBoundedByHalfScale) {
  Rng rng(fresh_seed());
  const int64_t rows = 37, cols = 256;
  const auto w = random_normal<Half>(rows * cols, rng);
  const auto wf = to_floats(w);
  for (const Int4Scheme& scheme : all_schemes(cols)) {
    if (scheme.search != ScaleSearch::None) continue;
    SCOPED_TRACE(scheme.describe());
    const Int4Matrix m = quantize_int4_ref(std::span<const Half>(w), rows, cols, scheme);
    const auto back = dequantize_int4_ref(m);
    const GroupLayout layout = m.layout();
    for (size_t i = 0; i < wf.size(); ++i) {
      const float s = m.scale(layout.group_of_flat(static_cast<int64_t>(i)));
      const float bound = s * (scheme.zero_point ? 0.5f + 15.0f * 0x1p-11f : 0.5f + 1e-5f);
      ASSERT_LE(std::fabs(wf[i] - back[i]), bound) << "element " << i;
    }
  }
}

// The search includes the plain scale among its candidates, so it can only lower its own objective.
TEST(Int4Quantize, SearchNeverWorseThanPlainOnItsObjective) {
  Rng rng(fresh_seed());
  const int64_t rows = 16, cols = 512;
  const auto w = random_normal<Half>(rows * cols, rng);
  const auto wf = to_floats(w);
  for (bool zp : {false, true}) {
    for (int64_t g : {32, 128, 512}) {
      const auto plain =
          dequantize_int4_ref(quantize_int4_ref(std::span<const Half>(w), rows, cols, groupwise(g, zp)));
      const auto mae = dequantize_int4_ref(
          quantize_int4_ref(std::span<const Half>(w), rows, cols, groupwise(g, zp, ScaleSearch::Mae)));
      const auto mse = dequantize_int4_ref(
          quantize_int4_ref(std::span<const Half>(w), rows, cols, groupwise(g, zp, ScaleSearch::Mse)));
      for (int64_t group = 0; group < rows * cols / g; ++group) {
        double abs_plain = 0, abs_search = 0, sq_plain = 0, sq_search = 0, absmax = 0;
        for (int64_t i = group * g; i < (group + 1) * g; ++i)
          absmax = std::max(absmax, std::fabs(double{wf[i]}));
        for (int64_t i = group * g; i < (group + 1) * g; ++i) {
          abs_plain += std::fabs(wf[i] - plain[i]);
          abs_search += std::fabs(wf[i] - mae[i]);
          sq_plain += (wf[i] - plain[i]) * (wf[i] - plain[i]);
          sq_search += (wf[i] - mse[i]) * (wf[i] - mse[i]);
        }
        // The search compares errors rounded to 2^-24 units after scaling by 2^-(floor(log2 absmax) + 2)
        // (int4::error_fixed_point): each of the two sums it compares may be off by half a unit per element,
        // so the pick can be worse than plain by up to one unit per element, in real terms 2^(e - 23) for
        // |error| and 2^(2e - 22) for error^2, where absmax = m * 2^e with m in [0.5, 1).
        int e = 0;
        std::frexp(absmax, &e);
        const double abs_unit = std::ldexp(1.0, e - 23), sq_unit = std::ldexp(1.0, 2 * e - 22);
        ASSERT_LE(abs_search, abs_plain * (1 + 1e-6) + abs_unit * g) << "g" << g << " group " << group;
        ASSERT_LE(sq_search, sq_plain * (1 + 1e-6) + sq_unit * g) << "g" << g << " group " << group;
      }
    }
  }
}

TEST(Int4Quantize, SearchIsDeterministicAndClipsGaussianGroups) {
  Rng rng(fresh_seed());
  const auto w = random_normal<Half>(64 * 256, rng);
  const auto a =
      quantize_int4_ref(std::span<const Half>(w), 64, 256, groupwise(128, false, ScaleSearch::Mae));
  const auto b =
      quantize_int4_ref(std::span<const Half>(w), 64, 256, groupwise(128, false, ScaleSearch::Mae));
  EXPECT_EQ(a.packed, b.packed);
  EXPECT_EQ(a.scales, b.scales);
  const auto plain = quantize_int4_ref(std::span<const Half>(w), 64, 256, groupwise(128));
  int smaller = 0;
  for (size_t g = 0; g < a.scales.size(); ++g)
    smaller += half_bits_to_float(a.scales[g]) < half_bits_to_float(plain.scales[g]);
  EXPECT_GT(smaller, static_cast<int>(a.scales.size()) / 2) << "MAE search should clip most Gaussian groups";
}

// Exactly the compression figures of the seed's table (fp16 source, 16-bit scales, 4096 x 4096).
TEST(Int4Quantize, CompressionFromStoredBytes) {
  const int64_t n = 4096;
  std::vector<Half> w(static_cast<size_t>(n * n));
  Rng rng(1);
  fill_normal(std::span<Half>(w), rng);
  auto compression = [&](const Int4Scheme& s) {
    return quantize_int4_ref(std::span<const Half>(w), n, n, s).compression();
  };
  EXPECT_NEAR(compression(of(Granularity::Global)), 3.999999, 5e-7);
  EXPECT_NEAR(compression(of(Granularity::Rowwise)), 3.996098, 5e-7);
  const std::pair<int64_t, double> seed_table[] = {{16, 3.2},        {32, 3.555556},   {64, 3.764706},
                                                   {128, 3.878788},  {256, 3.938462},  {512, 3.968992},
                                                   {1024, 3.984436}, {2048, 3.992203}, {4096, 3.996098}};
  for (const auto& [g, expected] : seed_table)
    EXPECT_NEAR(compression(groupwise(g)), expected, 5e-7) << "g" << g;
  // A zero point adds one byte per group: 2 * 16 / (16 / 2 + 2 + 1) for g = 16.
  EXPECT_NEAR(compression(groupwise(16, true)), 32.0 / 11.0, 1e-12);
}

// Bounds that hold for every draw (a relative-error bound does not: a 16-weight group's error varies a lot):
// without a search every weight is within one quantization step of its group (a half step of rounding, plus
// the zero point's own rounding and the 16-bit scale's); the search includes p = 100, so its MAE is never
// above the plain one's (up to the search's 2^-24 error normalisation and the 16-bit outputs).
TEST(Int4Quantize, OddShapes) {
  Rng rng(fresh_seed());
  for (int64_t g : {16, 64, 128}) {
    for (auto [rows, cols] :
         std::vector<std::pair<int64_t, int64_t>>{{1, g}, {3, g}, {1, 4096 + g}, {3, 4096 + g}}) {
      const auto w = random_normal<Half>(rows * cols, rng);
      const std::vector<float> wf = to_floats(w);
      for (bool zp : {false, true}) {
        double plain_mae = 0;
        for (ScaleSearch search : {ScaleSearch::None, ScaleSearch::Mae}) {
          const Int4Scheme scheme = groupwise(g, zp, search);
          SCOPED_TRACE(fmt::format("[{}, {}] {}", rows, cols, scheme.describe()));
          const Int4Matrix m = quantize_int4_ref(std::span<const Half>(w), rows, cols, scheme);
          ASSERT_EQ(m.packed.size(), static_cast<size_t>(rows * cols / 2));
          ASSERT_EQ(m.scales.size(), static_cast<size_t>(rows * cols / g));
          const std::vector<float> back = dequantize_int4_ref(m);
          const QuantError e = measure_error(wf, back);
          ASSERT_TRUE(std::isfinite(e.mae));
          if (search == ScaleSearch::None) {
            plain_mae = e.mae;
            for (int64_t i = 0; i < rows * cols; ++i) {
              const float step = m.scale(m.group_of(i / cols, i % cols));
              ASSERT_LE(std::fabs(wf[i] - back[i]), 1.01f * step + 1e-3f * std::fabs(wf[i]))
                  << "weight " << i;
            }
          } else {
            ASSERT_LE(e.mae, plain_mae * (1 + 1e-3) + 1e-7);
          }
        }
      }
    }
  }
}

TEST(Int4Quantize, ZeroRowsAndTinyGroupsGiveZerosNotNaN) {
  const int64_t rows = 4, cols = 64;
  std::vector<float> w(rows * cols, 0.0f);
  for (int64_t k = 0; k < cols; ++k) w[cols + k] = 0.25f * static_cast<float>(k % 7) - 0.5f;  // row 1 nonzero
  for (int64_t k = 0; k < cols; ++k) w[3 * cols + k] = 1e-30f * static_cast<float>(k);  // scale underflows
  for (const Int4Scheme& scheme : all_schemes(cols)) {
    SCOPED_TRACE(scheme.describe());
    const Int4Matrix m = quantize_int4_ref(w, rows, cols, scheme);
    const auto back = dequantize_int4_ref(m);
    for (int64_t i = 0; i < rows * cols; ++i) {
      ASSERT_FALSE(std::isnan(back[i])) << "element " << i;
      if (i / cols == 0 || i / cols == 2) {
        ASSERT_EQ(back[i], 0.0f) << "zero row element " << i;
      } else if (i / cols == 3) {
        ASSERT_LE(std::fabs(back[i]), 1e-6f);
      }
    }
  }
  const std::vector<float> all_zero(64, 0.0f);
  const Int4Matrix g = quantize_int4_ref(all_zero, 1, 64, of(Granularity::Global, false, ScaleSearch::Mse));
  EXPECT_EQ(g.scale(0), 0.0f);
  for (float v : dequantize_int4_ref(g)) EXPECT_EQ(v, 0.0f);
}

TEST(Int4Quantize, Bf16InputAndBf16Scales) {
  Rng rng(fresh_seed());
  const auto w = random_normal<BFloat16>(8 * 128, rng, 3.0);
  Int4Scheme scheme = groupwise(32, false, ScaleSearch::Mse);
  scheme.scale_dtype = DType::BF16;
  const Int4Matrix m = quantize_int4_ref(std::span<const BFloat16>(w), 8, 128, scheme);
  std::vector<float> wf(w.size());
  for (size_t i = 0; i < w.size(); ++i) wf[i] = to_float(w[i]);
  EXPECT_LT(measure_error(wf, dequantize_int4_ref(m)).rel_fro_err, 0.15);
  for (uint16_t s : m.scales) EXPECT_EQ(float_to_bf16_bits(bf16_bits_to_float(s)), s);
}

// The target: lower MAE than the seed project on every row, at the same compression.
TEST(Int4Quantize, MaeSearchBeatsTheSeedTable) {
  const int64_t rows = 1024, cols = 4096;
  std::vector<Half> w(static_cast<size_t>(rows * cols));
  Rng rng(0);
  fill_normal(std::span<Half>(w), rng);
  const auto wf = to_floats(w);
  auto mae = [&](const Int4Scheme& s) {
    return measure_error(wf, dequantize_int4_ref(quantize_int4_ref(std::span<const Half>(w), rows, cols, s)))
        .mae;
  };
  EXPECT_LT(mae(of(Granularity::Global, false, ScaleSearch::Mae)), 0.169577);
  EXPECT_LT(mae(of(Granularity::Rowwise, false, ScaleSearch::Mae)), 0.096904);
  const std::pair<int64_t, double> seed[] = {{16, 0.069842},   {32, 0.076343},   {64, 0.082926},
                                             {128, 0.089447},  {256, 0.095765},  {512, 0.101913},
                                             {1024, 0.107781}, {2048, 0.113451}, {4096, 0.118949}};
  for (const auto& [g, seed_mae] : seed)
    EXPECT_LT(mae(groupwise(g, false, ScaleSearch::Mae)), seed_mae) << "g" << g;
}

// ---- bad input
// ---------------------------------------------------------------------------------------------

TEST(Int4BadInput, ShapeAndGroupErrorsNameTheValues) {
  const std::vector<float> w(4 * 96, 1.0f);
  EXPECT_EQ(quantize_int4_ref(w, 4, 96, groupwise(64)).scales.size(), 8u);  // 64 + a partial 32 per row
  EXPECT_NE(error_of([&] {
              quantize_int4_ref(w, 4, 96, groupwise(0));
            }).find("must be a positive even number, got 0"),
            std::string::npos);
  EXPECT_NE(error_of([&] { quantize_int4_ref(w, 4, 96, groupwise(-32)); }).find("got -32"),
            std::string::npos);
  EXPECT_NE(error_of([&] { quantize_int4_ref(w, 4, 96, groupwise(3)); }).find("must be even"),
            std::string::npos);
  const std::vector<float> odd(3 * 5, 1.0f);
  EXPECT_NE(
      error_of([&] { quantize_int4_ref(odd, 3, 5, of(Granularity::Rowwise)); }).find("K = 5 must be even"),
      std::string::npos);
  EXPECT_NE(error_of([&] {
              quantize_int4_ref(w, 4, 94, of(Granularity::Rowwise));
            }).find("shape [4, 94] needs 376"),
            std::string::npos);
}

TEST(Int4BadInput, NonFiniteWeightsAreRejectedWithTheirPosition) {
  std::vector<float> w(4 * 64, 0.5f);
  w[2 * 64 + 5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(error_of([&] { quantize_int4_ref(w, 4, 64, groupwise(32)); }).find("row 2, column 5"),
            std::string::npos);
  w[2 * 64 + 5] = 0.5f;
  w[3 * 64 + 63] = -std::numeric_limits<float>::infinity();
  EXPECT_NE(error_of([&] { quantize_int4_ref(w, 4, 64, of(Granularity::Global)); }).find("row 3, column 63"),
            std::string::npos);
}

TEST(Int4BadInput, ScaleOverflowIsAnError) {
  std::vector<float> w(64, 1e30f);  // fine for bf16 scales, far beyond fp16's 65504
  EXPECT_NE(error_of([&] { quantize_int4_ref(w, 1, 64, groupwise(32)); }).find("overflows f16"),
            std::string::npos);
  Int4Scheme bf16 = groupwise(32);
  bf16.scale_dtype = DType::BF16;
  EXPECT_NO_THROW(quantize_int4_ref(w, 1, 64, bf16));
}

}  // namespace
}  // namespace qllm
