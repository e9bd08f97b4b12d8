// GGUF Q4_0 / Q4_1 tensors as qllm INT4 matrices (int4_from_ggml): on seeded random blocks the INT4
// reference reconstruction equals ggml's dequantization bit for bit (Q4_0 as the symmetric scheme, Q4_1 as
// the min-offset variant), and the conversion and the quantizers name what they refuse.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>

#include "core/random.h"
#include "qllm/half.h"
#include "quant/ggml_blocks.h"
#include "quant/w4a16_layout.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;
using testing::fresh_seed;

// Random blocks of `type` for a [rows, cols] tensor: random nibbles, fp16 scales and minimums of either sign
// over several binades (subnormal ones included).
std::vector<std::byte> random_blocks(GgmlType type, int64_t rows, int64_t cols, Rng& rng) {
  const bool q4_1 = type == GgmlType::Q4_1;
  const size_t block_bytes = q4_1 ? sizeof(GgmlBlockQ4_1) : sizeof(GgmlBlockQ4_0);
  std::vector<std::byte> out(static_cast<size_t>(rows * cols / kGgmlBlock) * block_bytes);
  auto fp16 = [&] {
    const double magnitude = std::ldexp(rng.uniform() + 0.5, static_cast<int>(rng.below(30)) - 22);
    return float_to_half_bits(static_cast<float>(rng.below(2) ? magnitude : -magnitude));
  };
  for (size_t b = 0; b < out.size() / block_bytes; ++b) {
    std::byte* block = out.data() + b * block_bytes;
    const uint16_t d = fp16(), m = fp16();
    std::memcpy(block, &d, 2);
    if (q4_1) std::memcpy(block + 2, &m, 2);
    for (size_t i = q4_1 ? 4 : 2; i < block_bytes; ++i) block[i] = static_cast<std::byte>(rng.below(256));
  }
  return out;
}

TEST(GgmlInt4, SameValuesAsGgmlBitForBit) {
  Rng rng(fresh_seed());
  for (const GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1}) {
    for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{1, 32}, {7, 96}, {64, 576}}) {
      SCOPED_TRACE(fmt::format("{} [{}, {}]", ggml_type_name(type), rows, cols));
      const std::vector<std::byte> data = random_blocks(type, rows, cols, rng);
      std::vector<float> ggml(static_cast<size_t>(rows * cols));
      dequantize_ggml(type, data, ggml);
      const Int4Matrix m = int4_from_ggml(type, data, rows, cols);
      EXPECT_EQ(m.scheme.granularity, Granularity::Groupwise);
      EXPECT_EQ(m.scheme.group_size, 32);
      EXPECT_EQ(m.scheme.min_offset, type == GgmlType::Q4_1);
      EXPECT_EQ(m.scales.size(), static_cast<size_t>(rows * cols / 32));
      // 4.5 (Q4_0) or 5 (Q4_1) bits per weight, as the file stores them.
      EXPECT_EQ(m.stored_bytes(), data.size());
      const std::vector<float> ours = dequantize_int4_ref(m);
      for (size_t i = 0; i < ours.size(); ++i) {
        ASSERT_EQ(std::bit_cast<uint32_t>(ours[i]), std::bit_cast<uint32_t>(ggml[i]))
            << "element " << i << ": " << ours[i] << " vs " << ggml[i];
      }
    }
  }
}

TEST(GgmlInt4, RefusalsNameTheProblem) {
  Rng rng(fresh_seed());
  const std::vector<std::byte> q4_1 = random_blocks(GgmlType::Q4_1, 2, 64, rng);
  EXPECT_NE(error_of([&] { int4_from_ggml(GgmlType::Q8_0, q4_1, 2, 64); }).find("q8_0"), std::string::npos);
  EXPECT_NE(error_of([&] { int4_from_ggml(GgmlType::Q4_1, q4_1, 2, 48); }).find("[2, 48]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { int4_from_ggml(GgmlType::Q4_1, q4_1, 3, 64); }).find("takes 120 bytes, got 80"),
            std::string::npos);
  const Int4Matrix m = int4_from_ggml(GgmlType::Q4_1, q4_1, 2, 64);
  // qllm never produces the min-offset scheme itself (the W4A16 layout reads it: test_gemm_w4a16_min.cpp).
  const std::vector<float> w(2 * 64, 0.5f);
  EXPECT_NE(error_of([&] { quantize_int4_ref(w, 2, 64, m.scheme); }).find("min-offset"), std::string::npos);
  EXPECT_TRUE(repack_w4a16(m, DType::F16).layout.min_offset);
  Int4Scheme both = m.scheme;
  both.zero_point = true;
  EXPECT_NE(error_of([&] { validate_int4_shape(2, 64, both); }).find("not both"), std::string::npos);
}

}  // namespace
}  // namespace qllm
