// CPU references of the small GPU ops (src/kernels/norm, elementwise, sampling): each equals the CPU forward
// pass's own function (cpu_ops.h) rounded at the stated points, and the embedding gather reads exactly the
// values the W4A16 GEMM reference dequantizes from the repacked layout.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/elementwise/embedding.h"
#include "kernels/elementwise/swiglu.h"
#include "kernels/norm/rmsnorm.h"
#include "kernels/sampling/token_logprobs.h"
#include "kernels/sampling/top_logprobs.h"
#include "model/cpu_ops.h"
#include "qllm/half.h"
#include "quant/int8_math.h"
#include "quant/w4a16_layout.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::fresh_seed;

uint16_t to_bits(float v, DType dtype) {
  return dtype == DType::BF16 ? float_to_bf16_bits(v) : float_to_half_bits(v);
}
float from_bits(uint16_t b, DType dtype) {
  return dtype == DType::BF16 ? bf16_bits_to_float(b) : half_bits_to_float(b);
}
std::vector<uint16_t> random_bits(size_t n, Rng& rng, DType dtype, double scale = 1.0) {
  std::vector<uint16_t> out(n);
  for (auto& b : out) b = to_bits(static_cast<float>(scale * rng.normal()), dtype);
  return out;
}

TEST(OpsRef, RmsNormIsTheCpuForwardRoundedOnce) {
  Rng rng(fresh_seed());
  for (DType dtype : {DType::BF16, DType::F16}) {
    for (int64_t hidden : {1, 64, 72, 577, 2048}) {
      const int64_t tokens = 3;
      const auto n = static_cast<size_t>(tokens * hidden);
      const std::vector<uint16_t> x = random_bits(n, rng, dtype, 2.0);
      std::vector<float> weight(static_cast<size_t>(hidden));
      for (float& w : weight)
        w = from_bits(to_bits(static_cast<float>(1 + 0.1 * rng.normal()), dtype), dtype);
      // Plain form.
      std::vector<uint16_t> out(n);
      rmsnorm_ref({.tokens = tokens,
                   .hidden = hidden,
                   .eps = 1e-5,
                   .dtype = dtype,
                   .x = x.data(),
                   .weight = weight.data(),
                   .out = out.data()});
      // Fused form: residual + delta, then the same normalisation; the residual is updated in place.
      std::vector<float> residual(n), expected_residual(n);
      for (size_t i = 0; i < n; ++i) residual[i] = static_cast<float>(rng.normal());
      for (size_t i = 0; i < n; ++i) expected_residual[i] = residual[i] + from_bits(x[i], dtype);
      std::vector<uint16_t> fused(n);
      rmsnorm_ref({.tokens = tokens,
                   .hidden = hidden,
                   .eps = 1e-6,
                   .dtype = dtype,
                   .residual = residual.data(),
                   .delta = x.data(),
                   .weight = weight.data(),
                   .out = fused.data()});
      EXPECT_EQ(residual, expected_residual);
      for (int64_t t = 0; t < tokens; ++t) {
        std::vector<float> row(static_cast<size_t>(hidden)), want(row.size()), want_fused(row.size());
        for (int64_t i = 0; i < hidden; ++i) row[i] = from_bits(x[t * hidden + i], dtype);
        cpu::rmsnorm(want.data(), row.data(), weight.data(), hidden, 1e-5);
        cpu::rmsnorm(want_fused.data(), expected_residual.data() + t * hidden, weight.data(), hidden, 1e-6);
        for (int64_t i = 0; i < hidden; ++i) {
          ASSERT_EQ(out[t * hidden + i], to_bits(want[i], dtype)) << "hidden " << hidden << " at " << i;
          ASSERT_EQ(fused[t * hidden + i], to_bits(want_fused[i], dtype))
              << "hidden " << hidden << " at " << i;
        }
      }
    }
  }
}

TEST(OpsRef, SwigluIsTheCpuForwardRoundedOnce) {
  Rng rng(fresh_seed());
  for (DType dtype : {DType::BF16, DType::F16}) {
    const int64_t tokens = 2, width = 77;
    const std::vector<uint16_t> gate_up =
        random_bits(static_cast<size_t>(tokens * 2 * width), rng, dtype, 3.0);
    std::vector<uint16_t> out(static_cast<size_t>(tokens * width));
    swiglu_ref({.tokens = tokens,
                .intermediate = width,
                .dtype = dtype,
                .gate_up = gate_up.data(),
                .out = out.data()});
    for (int64_t t = 0; t < tokens; ++t) {
      std::vector<float> gate(static_cast<size_t>(width)), up(gate.size());
      for (int64_t i = 0; i < width; ++i) {
        gate[i] = from_bits(gate_up[t * 2 * width + i], dtype);
        up[i] = from_bits(gate_up[t * 2 * width + width + i], dtype);
      }
      cpu::swiglu(gate.data(), up.data(), width);
      for (int64_t i = 0; i < width; ++i) ASSERT_EQ(out[t * width + i], to_bits(gate[i], dtype)) << i;
    }
  }
}

TEST(OpsRef, EmbeddingDenseAndInt8RowsReadTheTable) {
  Rng rng(fresh_seed());
  const int64_t vocab = 10, hidden = 13;
  const std::vector<uint16_t> dense = random_bits(static_cast<size_t>(vocab * hidden), rng, DType::F16);
  std::vector<int8_t> q(dense.size());
  std::vector<float> absmax(static_cast<size_t>(vocab));
  for (auto& v : q) v = static_cast<int8_t>(rng.uniform() * 254 - 127);
  for (auto& a : absmax) a = static_cast<float>(rng.uniform() * 4);
  const std::vector<int32_t> ids = {3, 0, 9, 12, -1, 3};  // 12 and -1 are out of range: zero rows, flag set
  for (auto storage : {EmbeddingStorage::Dense, EmbeddingStorage::Int8Rows}) {
    std::vector<float> out(ids.size() * hidden, -7.0f);
    int flag = 0;
    embedding_ref({.table = {.storage = storage,
                             .vocab = vocab,
                             .hidden = hidden,
                             .dtype = DType::F16,
                             .dense = dense.data(),
                             .int8_values = q.data(),
                             .int8_absmax = absmax.data()},
                   .tokens = static_cast<int64_t>(ids.size()),
                   .ids = ids.data(),
                   .out = out.data(),
                   .error_flag = &flag});
    EXPECT_EQ(flag, 1);
    for (size_t t = 0; t < ids.size(); ++t) {
      for (int64_t c = 0; c < hidden; ++c) {
        const float got = out[t * hidden + c];
        if (ids[t] < 0 || ids[t] >= vocab) {
          ASSERT_EQ(got, 0.0f);
          continue;
        }
        const size_t i = static_cast<size_t>(ids[t] * hidden + c);
        ASSERT_EQ(got, storage == EmbeddingStorage::Dense ? half_bits_to_float(dense[i])
                                                          : int8q::dequantize(q[i], absmax[ids[t]]));
      }
    }
  }
}

// Whole tiles, and the tails the layout pads: vocab 272 (the `small` preset) and 17, hidden 200 and 100 (not
// multiples of 64), hidden 576 with g128 (a partial last group, SmolLM2-135M).
TEST(OpsRef, EmbeddingInt4ReadsTheW4A16Layout) {
  Rng rng(fresh_seed());
  const std::pair<int64_t, int64_t> shapes[] = {{64, 192}, {272, 200}, {17, 100}, {40, 576}};
  for (const auto& [vocab, hidden] : shapes) {
    for (DType dtype : {DType::BF16, DType::F16}) {
      for (bool zero_point : {false, true}) {
        for (int64_t group : {int64_t{0}, int64_t{32}, int64_t{64}, int64_t{128}}) {  // 0: ROWWISE
          SCOPED_TRACE(
              fmt::format("[{}, {}] {} zp={} group {}", vocab, hidden, dtype_name(dtype), zero_point, group));
          std::vector<float> w(static_cast<size_t>(vocab * hidden));
          for (auto& v : w) v = static_cast<float>(0.05 * rng.normal());
          const Int4Scheme scheme{.granularity = group ? Granularity::Groupwise : Granularity::Rowwise,
                                  .group_size = group ? group : 128,
                                  .zero_point = zero_point,
                                  .scale_dtype = dtype};
          const W4A16Weights packed = repack_w4a16(quantize_int4_ref(w, vocab, hidden, scheme), dtype);
          const std::vector<double> expected = dequantize_w4a16_ref(packed, W4A16Precision::Exact);
          std::vector<int32_t> ids(static_cast<size_t>(vocab));
          for (int32_t i = 0; i < vocab; ++i)
            ids[static_cast<size_t>(i)] = static_cast<int32_t>(vocab) - 1 - i;
          std::vector<float> out(static_cast<size_t>(vocab * hidden));
          embedding_ref({.table = {.storage = EmbeddingStorage::Int4,
                                   .vocab = vocab,
                                   .hidden = hidden,
                                   .dtype = dtype,
                                   .int4_qweight = packed.qweight.data(),
                                   .int4_scales = packed.scales.data(),
                                   .int4_zero_offsets = zero_point ? packed.zero_offsets.data() : nullptr,
                                   .int4_group_k = packed.layout.group_k},
                         .tokens = vocab,
                         .ids = ids.data(),
                         .out = out.data()});
          for (int64_t t = 0; t < vocab; ++t) {
            for (int64_t c = 0; c < hidden; ++c) {
              ASSERT_EQ(out[t * hidden + c], expected[ids[t] * hidden + c]) << "token " << t << " col " << c;
            }
          }
        }
      }
    }
  }
}

// An int8 table stored with padded rows (QuantLinear keeps int8 weights [N, K] padded to multiples of 64).
TEST(OpsRef, EmbeddingInt8RowsWithAStride) {
  Rng rng(fresh_seed());
  const int64_t vocab = 5, hidden = 13, stride = 64;
  std::vector<int8_t> q(static_cast<size_t>(vocab * stride), 99);  // 99 in the padding: never read
  std::vector<float> absmax(static_cast<size_t>(vocab));
  for (int64_t r = 0; r < vocab; ++r) {
    for (int64_t c = 0; c < hidden; ++c) q[r * stride + c] = static_cast<int8_t>(rng.uniform() * 254 - 127);
  }
  for (auto& a : absmax) a = static_cast<float>(rng.uniform() * 4);
  const std::vector<int32_t> ids = {4, 0, 2};
  std::vector<float> out(ids.size() * hidden, -7.0f);
  embedding_ref({.table = {.storage = EmbeddingStorage::Int8Rows,
                           .vocab = vocab,
                           .hidden = hidden,
                           .int8_values = q.data(),
                           .int8_absmax = absmax.data(),
                           .int8_row_stride = stride},
                 .tokens = static_cast<int64_t>(ids.size()),
                 .ids = ids.data(),
                 .out = out.data()});
  for (size_t t = 0; t < ids.size(); ++t) {
    for (int64_t c = 0; c < hidden; ++c)
      ASSERT_EQ(out[t * hidden + c], int8q::dequantize(q[ids[t] * stride + c], absmax[ids[t]]))
          << t << " " << c;
  }
}

TEST(OpsRef, TokenLogProbsIsTheCpuForwardNll) {
  Rng rng(fresh_seed());
  for (DType dtype : {DType::BF16, DType::F16}) {
    const int64_t vocab = 1001;
    const std::vector<int32_t> targets = {5, -1, 1000, 0, 1001};
    const std::vector<uint16_t> logits = random_bits(targets.size() * vocab, rng, dtype, 4.0);
    std::vector<double> nll(targets.size(), -1.0);
    std::vector<float> logprob(targets.size(), -1.0f);
    int flag = 0;
    token_logprobs_ref({.rows = static_cast<int64_t>(targets.size()),
                        .vocab = vocab,
                        .dtype = dtype,
                        .logits = logits.data(),
                        .targets = targets.data(),
                        .nll = nll.data(),
                        .logprob = logprob.data(),
                        .error_flag = &flag});
    EXPECT_EQ(flag, 1);  // target 1001 is out of range
    EXPECT_TRUE(std::isnan(nll[4]));
    EXPECT_EQ(nll[1], 0.0);
    EXPECT_EQ(logprob[1], 0.0f);
    for (size_t r : {0u, 2u, 3u}) {
      std::vector<float> row(static_cast<size_t>(vocab));
      for (int64_t i = 0; i < vocab; ++i) row[i] = from_bits(logits[r * vocab + i], dtype);
      EXPECT_EQ(nll[r], cpu::negative_log_likelihood(row.data(), vocab, targets[r])) << r;
      EXPECT_EQ(logprob[r], static_cast<float>(-nll[r]));
      EXPECT_GT(nll[r], 0.0);
    }
  }
}

TEST(OpsRef, TopLogProbsAreTheLikeliestInOrderAndNormalised) {
  for (DType dtype : {DType::BF16, DType::F16}) {
    // Row 0: ties (2.0 at ids 1 and 3, 1.0 at 0, 2 and 5); all k = vocab log-probs exponentiate to 1.
    const std::vector<float> values = {1, 2, 1, 2, -1, 1, 0.5f, -3};
    const auto vocab = static_cast<int64_t>(values.size());
    std::vector<uint16_t> logits;
    for (float v : values) logits.push_back(to_bits(v, dtype));
    logits.resize(2 * values.size(), to_bits(0.0f, dtype));
    logits[vocab + 4] = to_bits(INFINITY, dtype);  // row 1: not finite
    const int k = static_cast<int>(vocab);
    std::vector<int32_t> ids(2 * vocab, 99);
    std::vector<float> logprobs(2 * vocab, 99.0f);
    int flag = 0;
    top_logprobs_ref({.rows = 2,
                      .vocab = vocab,
                      .k = k,
                      .dtype = dtype,
                      .logits = logits.data(),
                      .ids = ids.data(),
                      .logprobs = logprobs.data(),
                      .error_flag = &flag});
    EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + k),
              (std::vector<int32_t>{1, 3, 0, 2, 5, 6, 4, 7}));
    double mass = 0;
    for (int j = 0; j < k; ++j) mass += std::exp(static_cast<double>(logprobs[j]));
    EXPECT_NEAR(mass, 1.0, 1e-6);
    EXPECT_NEAR(logprobs[0], -cpu::negative_log_likelihood(values.data(), vocab, 1), 1e-6);
    EXPECT_EQ(flag, 1);
    EXPECT_EQ(ids[k], -1);
    EXPECT_TRUE(std::isnan(logprobs[k]));
  }
}

}  // namespace
}  // namespace qllm
