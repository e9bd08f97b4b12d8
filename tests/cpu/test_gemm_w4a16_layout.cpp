// W4A16 repacked layout: round trip, the MMA fragment order checked against the PTX ISA's table, and the
// CPU reference GEMM against a naive fp64 dequantize-then-multiply.
#include <gtest/gtest.h>

#include <cmath>

#include "qllm/error.h"
#include "quant/w4a16_layout.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;
using testing::fresh_seed;

Int4Matrix random_quantized(int64_t n, int64_t k, const Int4Scheme& scheme, Rng& rng) {
  std::vector<float> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = static_cast<float>(0.02 * rng.normal());
  return quantize_int4_ref(w, n, k, scheme);
}

std::vector<Int4Scheme> schemes() {
  std::vector<Int4Scheme> out;
  for (bool zp : {false, true}) {
    out.push_back({.granularity = Granularity::Global, .zero_point = zp, .scale_dtype = DType::BF16});
    out.push_back({.granularity = Granularity::Rowwise, .zero_point = zp, .scale_dtype = DType::BF16});
    for (int64_t g : {32, 64, 128}) {
      out.push_back({.group_size = g, .zero_point = zp, .scale_dtype = DType::BF16});
    }
  }
  return out;
}

// Shapes: whole tiles, and tails: partial last groups (K = 576, 320 with g128), N and K not multiples of 64
// (the `small` preset's vocab 272; K = 200, 136, 100), a single short row block.
const std::pair<int64_t, int64_t> kShapes[] = {{64, 64},   {128, 192}, {192, 256}, {64, 576}, {192, 320},
                                               {272, 192}, {200, 136}, {8, 100},   {16, 200}, {48, 34}};

TEST(W4A16Layout, RepackUnpackRoundTrip) {
  Rng rng(fresh_seed());
  for (const Int4Scheme& s : schemes()) {
    for (auto [n, k] : kShapes) {
      SCOPED_TRACE(fmt::format("[{}, {}] {}", n, k, s.describe()));
      const Int4Matrix m = random_quantized(n, k, s, rng);
      const W4A16Weights w = repack_w4a16(m, DType::BF16);
      const int64_t np = (n + 63) / 64 * 64, kp = (k + 63) / 64 * 64;
      ASSERT_EQ(w.layout.padded_n(), np);
      ASSERT_EQ(w.layout.padded_k(), kp);
      ASSERT_EQ(w.qweight.size(), static_cast<size_t>(np * kp / 2));
      ASSERT_EQ(w.scales.size(), static_cast<size_t>(np * w.layout.groups_per_row()));
      const Int4Matrix back = unpack_w4a16(w);
      EXPECT_EQ(back.packed, m.packed);
      // The scale dtype is the activation dtype here, so scales come back bit for bit (GLOBAL's one scale
      // repeated for every group of the unpacked matrix).
      if (s.granularity != Granularity::Global) {
        EXPECT_EQ(back.scales, m.scales);
        EXPECT_EQ(back.zeros, m.zeros);
      } else {
        ASSERT_FALSE(back.scales.empty());
        for (uint16_t scale : back.scales) ASSERT_EQ(scale, m.scales[0]);
      }
      const GroupLayout groups = m.layout();
      for (int64_t row = 0; row < n; ++row) {
        for (int64_t col = 0; col < k; col += 2) {
          const int64_t g = groups.group_of(row, col);
          ASSERT_EQ(w.scale(row, col), m.scale(g));
          ASSERT_EQ(w.zero(row, col), m.zero(g));
        }
      }
      // Every padding weight is an exact zero, whatever the scheme: (u - z) * s == 0 with a finite s.
      for (int64_t row = 0; row < np; ++row) {
        for (int64_t col = (row < n ? k : 0); col < kp; ++col) {
          ASSERT_EQ(w.nibble(row, col), w.zero(row, col)) << "padding at (" << row << ", " << col << ")";
          ASSERT_TRUE(std::isfinite(w.scale(row, col)));
        }
      }
    }
  }
}

// PTX ISA, mma.m16n8k16 with 16-bit A: thread (groupID g, threadID_in_group t) holds a0..a7 with
//   a_i at row g + 8 * ((i / 2) % 2), column 2t + (i % 2) + 8 * (i / 4),
// and register j = {a_2j (low half), a_2j+1 (high half)}. The kernels form register j of k16 step s from
// the lane's 32-bit word s as ((word >> 4j) & 0x000f000f): its low half is nibble j, its high half nibble
// j+4.
TEST(W4A16Layout, FragmentOrderMatchesThePtxTable) {
  Rng rng(fresh_seed());
  const int64_t n = 64, k = 128;
  const Int4Matrix m = random_quantized(n, k, {.group_size = 32, .scale_dtype = DType::BF16}, rng);
  const W4A16Weights w = repack_w4a16(m, DType::BF16);
  for (int64_t tile = 0; tile < n / 16; ++tile) {
    for (int64_t block = 0; block < k / 64; ++block) {
      const uint8_t* unit = w.qweight.data() + (tile * (k / 64) + block) * kW4A16UnitBytes;
      for (int lane = 0; lane < 32; ++lane) {
        const int g = lane / 4, t = lane % 4;
        for (int step = 0; step < 4; ++step) {
          const uint8_t* p = unit + lane * 16 + 4 * step;
          const uint32_t word = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
          for (int i = 0; i < 8; ++i) {
            const int reg = i / 2, half = i % 2;
            const uint32_t extracted = (word >> (4 * reg)) & 0x000f000fu;
            const uint32_t value = half == 0 ? (extracted & 0xf) : (extracted >> 16);
            const int64_t row = tile * 16 + g + 8 * ((i / 2) % 2);
            const int64_t col = block * 64 + step * 16 + 2 * t + (i % 2) + 8 * (i / 4);
            ASSERT_EQ(value, m.nibble(row * k + col)) << "tile " << tile << " lane " << lane << " a" << i;
          }
        }
      }
    }
  }
}

TEST(W4A16Reference, MatchesNaiveDequantizeThenMultiply) {
  Rng rng(fresh_seed());
  const int64_t m = 5;
  for (auto [n, k] : {std::pair<int64_t, int64_t>{128, 192}, {64, 576}, {192, 320}, {200, 136}, {8, 100}}) {
    std::vector<float> x(static_cast<size_t>(m * k));
    for (auto& v : x) v = bf16_bits_to_float(float_to_bf16_bits(static_cast<float>(rng.normal())));
    for (const Int4Scheme& s : schemes()) {
      SCOPED_TRACE(fmt::format("[{}, {}] {}", n, k, s.describe()));
      const Int4Matrix q = random_quantized(n, k, s, rng);
      const std::vector<float> dequant = dequantize_int4_ref(q);  // exact (q - z) * s
      const W4A16Weights w = repack_w4a16(q, DType::BF16);
      const auto exact = gemm_w4a16_ref(x, m, w, W4A16Precision::Exact);
      const auto rounded = gemm_w4a16_ref(x, m, w, W4A16Precision::RoundedWeights);
      ASSERT_EQ(exact.size(), static_cast<size_t>(m * n));
      for (int64_t row = 0; row < m; ++row) {
        for (int64_t col = 0; col < n; ++col) {
          double naive = 0, naive_rounded = 0;
          for (int64_t i = 0; i < k; ++i) {
            const float wv = dequant[static_cast<size_t>(col * k + i)];
            naive += static_cast<double>(x[row * k + i]) * wv;
            naive_rounded += static_cast<double>(x[row * k + i]) * bf16_bits_to_float(float_to_bf16_bits(wv));
          }
          ASSERT_NEAR(exact[row * n + col], naive, 1e-6 * (1 + std::fabs(naive)));
          ASSERT_NEAR(rounded[row * n + col], naive_rounded, 1e-6 * (1 + std::fabs(naive_rounded)));
        }
      }
    }
  }
}

TEST(W4A16Layout, RejectsUnsupportedShapes) {
  Rng rng(1);
  auto message = [&](int64_t n, int64_t k, const Int4Scheme& s, DType act) {
    return testing::error_of([&] { repack_w4a16(random_quantized(n, k, s, rng), act); });
  };
  EXPECT_NE(message(64, 64, {.group_size = 8}, DType::BF16).find("group size divisible by 16, got 8"),
            std::string::npos);
  EXPECT_NE(message(96, 72, {.group_size = 24}, DType::BF16).find("[96, 72]"), std::string::npos);
  EXPECT_NE(message(64, 64, {.group_size = 32}, DType::F32).find("must be bf16 or f16"), std::string::npos);
  // Odd K cannot even be quantized (two weights per byte); the layout says so for a hand-made matrix too.
  Int4Matrix odd;
  odd.rows = 4;
  odd.cols = 7;
  EXPECT_NE(testing::error_of([&] { w4a16_layout_for(odd, DType::BF16); }).find("even K"), std::string::npos);
}

}  // namespace
}  // namespace qllm
