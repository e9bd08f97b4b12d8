// Min-offset INT4 (GGUF Q4_1: w' = u * s + m) in the W4A16 repacked layout: repack/unpack is the identity
// with the minimums, the padding is zero where it can be, the reference GEMM equals the GEMM on the
// dequantized weights (exact and rounded to the activation dtype), a Q4_1 tensor keeps ggml's values bit for
// bit through the layout, and the embedding gather reads the minimums. Shapes: whole tiles, partial last
// groups, odd N and K, K not a multiple of 8, and SmolLM2-135M's.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>

#include "kernels/elementwise/embedding.h"
#include "qllm/error.h"
#include "quant/ggml_blocks.h"
#include "quant/w4a16_layout.h"
#include "tests/cpu/q4_gguf_test_support.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::fresh_seed;
using testing::random_min_offset;

// Shapes: whole tiles; K = 576 (g128: a partial last group; SmolLM2's hidden), 320, 200, 136 (not multiples
// of 64), 100 and 34 (not multiples of 8); N = 272, 200, 201, 8 (not multiples of 64).
struct Shape {
  int64_t n, k, g;
};
const Shape kShapes[] = {{64, 64, 32},   {128, 192, 32}, {192, 576, 32}, {64, 576, 128},
                         {192, 320, 64}, {272, 192, 16}, {200, 136, 32}, {201, 136, 48},
                         {8, 100, 32},   {48, 34, 0},    {96, 1536, 32}};

TEST(W4A16MinOffset, RepackUnpackRoundTripWithMinimums) {
  Rng rng(fresh_seed());
  for (const DType dtype : {DType::F16, DType::BF16}) {
    for (const Shape& s : kShapes) {
      const Int4Matrix m = random_min_offset(s.n, s.k, s.g, dtype, rng);
      SCOPED_TRACE(fmt::format("[{}, {}] {}", s.n, s.k, m.scheme.describe()));
      const W4A16Weights w = repack_w4a16(m, dtype);
      ASSERT_TRUE(w.layout.min_offset);
      ASSERT_FALSE(w.layout.zero_point);
      ASSERT_EQ(w.zero_offsets.size(), w.scales.size());
      const Int4Matrix back = unpack_w4a16(w);
      EXPECT_TRUE(back.scheme.min_offset);
      EXPECT_EQ(back.packed, m.packed);
      EXPECT_EQ(back.scales, m.scales);
      EXPECT_EQ(back.mins, m.mins);
      EXPECT_TRUE(back.zeros.empty());
      // And the values: the unpacked matrix reconstructs what the original does, bit for bit.
      EXPECT_EQ(dequantize_int4_ref(back), dequantize_int4_ref(m));
      const GroupLayout groups = m.layout();
      for (int64_t row = 0; row < s.n; ++row) {
        for (int64_t col = 0; col < s.k; ++col) {
          const int64_t g = groups.group_of(row, col);
          ASSERT_EQ(w.scale(row, col), m.scale(g));
          ASSERT_EQ(w.min(row, col), m.min(g));
          ASSERT_EQ(w.zero(row, col), 0);
        }
      }
    }
  }
}

// Padding rows and groups of padding columns alone are exact zeros (scale and minimum 0). A real partial
// group has no nibble of value 0: its padding columns hold u = 0, i.e. its minimum, which only ever meets
// X's zero padding (the kernels read X as zeros past K).
TEST(W4A16MinOffset, PaddingIsZeroOrMeetsZeroActivations) {
  Rng rng(fresh_seed());
  for (const Shape& s : kShapes) {
    const Int4Matrix m = random_min_offset(s.n, s.k, s.g, DType::F16, rng);
    SCOPED_TRACE(fmt::format("[{}, {}] {}", s.n, s.k, m.scheme.describe()));
    const W4A16Weights w = repack_w4a16(m, DType::F16);
    const W4A16Layout& l = w.layout;
    for (int64_t row = 0; row < l.padded_n(); ++row) {
      for (int64_t col = (row < l.n ? l.k : 0); col < l.padded_k(); ++col) {
        const bool real_group = row < l.n && col / l.group_k * l.group_k < l.k;
        const double value = w.nibble(row, col) * static_cast<double>(w.scale(row, col)) + w.min(row, col);
        if (real_group) {
          ASSERT_EQ(w.nibble(row, col), 0) << "(" << row << ", " << col << ")";
          ASSERT_EQ(value, w.min(row, col));
        } else {
          ASSERT_EQ(value, 0.0) << "padding at (" << row << ", " << col << ")";
          ASSERT_EQ(w.scale(row, col), 0.0f);
          ASSERT_EQ(w.min(row, col), 0.0f);
        }
      }
    }
  }
}

TEST(W4A16MinOffset, ReferenceGemmMatchesDequantizedWeights) {
  Rng rng(fresh_seed());
  const int64_t tokens = 3;
  for (const DType dtype : {DType::F16, DType::BF16}) {
    const bool bf16 = dtype == DType::BF16;
    auto round16 = [&](float v) {
      return bf16 ? bf16_bits_to_float(float_to_bf16_bits(v)) : half_bits_to_float(float_to_half_bits(v));
    };
    for (const Shape& s : kShapes) {
      const Int4Matrix q = random_min_offset(s.n, s.k, s.g, dtype, rng);
      SCOPED_TRACE(fmt::format("[{}, {}] {}", s.n, s.k, q.scheme.describe()));
      std::vector<float> x(static_cast<size_t>(tokens * s.k));
      for (auto& v : x) v = round16(static_cast<float>(rng.normal()));
      const std::vector<float> dequant = dequantize_int4_ref(q);  // u * s + m, one f32 rounding (ggml's)
      const W4A16Weights w = repack_w4a16(q, dtype);
      // The rounded weights are the f32 values rounded once more, bit for bit (the dequant kernel's).
      const std::vector<double> rounded_w = dequantize_w4a16_ref(w, W4A16Precision::RoundedWeights);
      for (size_t i = 0; i < dequant.size(); ++i)
        ASSERT_EQ(rounded_w[i], static_cast<double>(round16(dequant[i]))) << "weight " << i;
      const auto exact = gemm_w4a16_ref(x, tokens, w, W4A16Precision::Exact);
      const auto rounded = gemm_w4a16_ref(x, tokens, w, W4A16Precision::RoundedWeights);
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t n = 0; n < s.n; ++n) {
          double naive = 0, naive_rounded = 0, scale = 0;
          for (int64_t i = 0; i < s.k; ++i) {
            const float wv = dequant[static_cast<size_t>(n * s.k + i)];
            const double xv = x[static_cast<size_t>(t * s.k + i)];
            naive += xv * wv;
            naive_rounded += xv * round16(wv);
            scale += std::fabs(xv * wv);
          }
          // Exact: u * s + m unrounded, within 2^-24 of each f32 weight.
          ASSERT_NEAR(exact[static_cast<size_t>(t * s.n + n)], naive, 1e-6 * (1 + scale));
          ASSERT_NEAR(rounded[static_cast<size_t>(t * s.n + n)], naive_rounded, 1e-6 * (1 + scale));
          ASSERT_NEAR(gemm_w4a16_ref_element(x, w, t, n, W4A16Precision::Exact),
                      exact[static_cast<size_t>(t * s.n + n)], 1e-6 * (1 + scale));
        }
      }
    }
  }
}

// GGUF Q4_1 blocks through int4_from_ggml and the layout: the exact reference weights, rounded to f32, are
// ggml's dequantized values bit for bit (SmolLM2's shapes: K = 576 and 1536).
TEST(W4A16MinOffset, Q4_1TensorKeepsGgmlValues) {
  Rng rng(fresh_seed());
  for (const auto& [n, k] : {std::pair<int64_t, int64_t>{192, 576}, {64, 1536}, {200, 96}}) {
    std::vector<float> w(static_cast<size_t>(n * k));
    for (float& v : w) v = static_cast<float>(0.05 * rng.normal());
    const std::vector<std::byte> blocks = testing::encode_ggml(GgmlType::Q4_1, w);
    std::vector<float> ggml(w.size());
    dequantize_ggml(GgmlType::Q4_1, blocks, ggml);
    const W4A16Weights packed = repack_w4a16(int4_from_ggml(GgmlType::Q4_1, blocks, n, k), DType::F16);
    const std::vector<double> exact = dequantize_w4a16_ref(packed, W4A16Precision::Exact);
    for (size_t i = 0; i < ggml.size(); ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(static_cast<float>(exact[i])), std::bit_cast<uint32_t>(ggml[i]))
          << "element " << i;
    }
  }
}

// The embedding gather of a min-offset table (a Q4_1 token_embd tied to the lm_head) reads u * s + m as
// ggml does, from the layout's bytes (embedding_ref: the spec of the CUDA gather).
TEST(W4A16MinOffset, EmbeddingGatherReadsTheMinimums) {
  Rng rng(fresh_seed());
  for (const DType dtype : {DType::F16, DType::BF16}) {
    const int64_t vocab = 201, hidden = 576;
    const Int4Matrix q = random_min_offset(vocab, hidden, 32, dtype, rng);
    const W4A16Weights w = repack_w4a16(q, dtype);
    EmbeddingParams p;
    p.table.storage = EmbeddingStorage::Int4;
    p.table.vocab = vocab;
    p.table.hidden = hidden;
    p.table.dtype = dtype;
    p.table.int4_qweight = w.qweight.data();
    p.table.int4_scales = w.scales.data();
    p.table.int4_mins = w.zero_offsets.data();
    p.table.int4_group_k = w.layout.group_k;
    const std::vector<int32_t> ids = {0, 200, 17, 5, -1};
    std::vector<float> out(ids.size() * hidden);
    int error = 0;
    p.tokens = static_cast<int64_t>(ids.size());
    p.ids = ids.data();
    p.out = out.data();
    p.error_flag = &error;
    embedding_ref(p);
    EXPECT_EQ(error, 1);  // the -1
    const std::vector<float> values = dequantize_int4_ref(q);
    for (size_t t = 0; t + 1 < ids.size(); ++t) {
      for (int64_t c = 0; c < hidden; ++c) {
        ASSERT_EQ(std::bit_cast<uint32_t>(out[t * hidden + c]),
                  std::bit_cast<uint32_t>(values[static_cast<size_t>(ids[t] * hidden + c)]))
            << "token " << t << " column " << c;
      }
    }
  }
}

}  // namespace
}  // namespace qllm
