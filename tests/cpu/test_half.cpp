// fp16 / bf16 conversions: exact against a table of edge values, exhaustive round trips, and
// round-to-nearest-even checked against the neighbouring representable values.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "core/random.h"
#include "qllm/half.h"

namespace qllm {
namespace {

struct FloatToBits {
  float value;
  uint16_t bits;
};

TEST(Half, FloatToHalfEdgeValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const FloatToBits table[] = {
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {1.0f, 0x3c00},
      {-2.0f, 0xc000},
      {0.1f, 0x2e66},
      {1.0f / 3.0f, 0x3555},
      {65504.0f, 0x7bff},   // largest finite
      {65519.99f, 0x7bff},  // just below the halfway point to 65536
      {65520.0f, 0x7c00},   // halfway, ties to even: overflows to inf
      {1e9f, 0x7c00},
      {-1e9f, 0xfc00},
      {inf, 0x7c00},
      {-inf, 0xfc00},
      {0x1p-14f, 0x0400},           // smallest normal
      {0x1p-24f, 0x0001},           // smallest subnormal
      {0x3ffp-24f, 0x03ff},         // largest subnormal
      {0x1p-25f, 0x0000},           // half the smallest subnormal: tie, to even (0)
      {0x1.8p-25f, 0x0001},         // above the tie
      {0x3p-25f, 0x0002},           // 1.5 units: tie between 1 and 2, to even (2)
      {-0x1p-26f, 0x8000},          // underflows to -0
      {1.0f + 0x1p-11f, 0x3c00},    // tie between 1 and 1 + 2^-10: to even
      {1.0f + 0x3p-11f, 0x3c02},    // tie between 1 + 2^-10 and 1 + 2^-9: to even
      {1.0f + 0x1.8p-11f, 0x3c01},  // above the tie
  };
  for (const auto& [value, bits] : table) {
    EXPECT_EQ(float_to_half_bits(value), bits) << "value " << value;
  }
  EXPECT_EQ(float_to_half_bits(std::numeric_limits<float>::quiet_NaN()), 0x7fff);
}

TEST(Half, HalfToFloatEdgeValues) {
  EXPECT_EQ(half_bits_to_float(0x0001), 0x1p-24f);
  EXPECT_EQ(half_bits_to_float(0x03ff), 0x3ffp-24f);
  EXPECT_EQ(half_bits_to_float(0x0400), 0x1p-14f);
  EXPECT_EQ(half_bits_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(half_bits_to_float(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(half_bits_to_float(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(half_bits_to_float(0x7e00)));
  EXPECT_TRUE(std::isnan(half_bits_to_float(0x7c01)));
  EXPECT_TRUE(std::signbit(half_bits_to_float(0x8000)));
  EXPECT_EQ(half_bits_to_float(0x8000), 0.0f);
}

TEST(Half, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_bits_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_half_bits(f), h) << "half 0x" << std::hex << h;
  }
}

// Independent check of rounding: the result must be the nearest half, and on a tie the even one.
TEST(Half, RandomFloatsRoundToNearestEven) {
  Rng rng(12345);
  for (int i = 0; i < 200000; ++i) {
    const float f =
        static_cast<float>(rng.normal() * std::pow(2.0, static_cast<double>(rng.below(40)) - 26.0));
    const uint16_t h = float_to_half_bits(f);
    const double got = half_bits_to_float(h);
    const double err = std::fabs(got - static_cast<double>(f));
    for (int step : {-1, 1}) {
      const uint16_t neighbour = static_cast<uint16_t>(h + step);
      const float other = half_bits_to_float(neighbour);
      if (std::isnan(other) || std::isinf(other) || (neighbour & 0x7fff) == 0x7fff) continue;
      if (((h ^ neighbour) & 0x8000) != 0) continue;  // crossed the sign: not a neighbour in value
      const double other_err = std::fabs(static_cast<double>(other) - static_cast<double>(f));
      ASSERT_LE(err, other_err) << "f=" << f;
      if (err == other_err) {
        ASSERT_EQ(h & 1, 0) << "tie not to even for f=" << f;
      }
    }
  }
}

TEST(BFloat16, EdgeValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const FloatToBits table[] = {
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {1.0f, 0x3f80},
      {1.0f + 0x1p-8f, 0x3f80},                     // tie: to even
      {1.0f + 0x3p-8f, 0x3f82},                     // tie: to even (up)
      {1.0f + 0x1.8p-8f, 0x3f81},                   // above the tie
      {3.3895314e38f, 0x7f7f},                      // largest finite bf16
      {std::numeric_limits<float>::max(), 0x7f80},  // rounds past the largest bf16: inf
      {inf, 0x7f80},
      {-inf, 0xff80},
      {1e-40f, 0x0001},  // float subnormal stays a bf16 subnormal
      {std::numeric_limits<float>::denorm_min(), 0x0000},
  };
  for (const auto& [value, bits] : table) {
    EXPECT_EQ(float_to_bf16_bits(value), bits) << "value " << value;
  }
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN()), 0x7fff);
  EXPECT_EQ(bf16_bits_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_bits_to_float(0x7f80), inf);
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(0x7fc0)));
}

TEST(BFloat16, EveryBf16RoundTripsThroughFloat) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = bf16_bits_to_float(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_bf16_bits(f), b) << "bf16 0x" << std::hex << b;
  }
}

}  // namespace
}  // namespace qllm
