// GPTQ on the GPU (kernels/gptq/gptq_cuda.h) against the CPU reference (quant/gptq_ref.h): the fp32 Hessian
// and the double inverse factor within rounding; the column loop bit for bit given the same factor, for every
// scheme (global, rowwise, groupwise with partial last groups and groups larger than a batch, symmetric and
// zero-point, scale search, act order, dead columns); the whole solver's output error beside the CPU's; and
// the calibration pass's matmuls, Hessians and attention (engine/calibration_math.h) beside the CPU reference
// math.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <tuple>

#include "engine/calibration.h"
#include "engine/calibration_math.h"
#include "engine/gptq_model.h"
#include "engine/load_model.h"
#include "kernels/gptq/gptq_cuda.h"
#include "model/llama_ref.h"
#include "model/synthetic.h"
#include "tests/cpu/model_test_support.h"
#include "tests/support/gptq_test_support.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::correlated_inputs;
using testing::fresh_seed;
using testing::hessian_of;
using testing::random_normal;

TEST(GptqCuda, HessianMatchesCpu) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  const int64_t dim = 96, tokens = 300;
  const auto x = correlated_inputs(tokens, dim, rng);
  HessianCuda h(dim);
  DeviceBuffer<float> d_x = to_device<float>(x);
  h.add(d_x.data(), 100, nullptr);  // two calls: the sum runs on
  h.add(d_x.data() + 100 * dim, tokens - 100, nullptr);
  const auto gpu = h.hessian(nullptr);
  const auto cpu = hessian_of(x, dim);
  float max_abs = 0;
  for (float v : cpu) max_abs = std::max(max_abs, std::fabs(v));
  for (size_t i = 0; i < cpu.size(); ++i) ASSERT_NEAR(gpu[i], cpu[i], 1e-5f * max_abs) << i;
}

TEST(GptqCuda, InverseFactorMatchesCpu) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  for (const int64_t dim : {int64_t{17}, int64_t{200}, int64_t{576}}) {
    const auto h = hessian_of(correlated_inputs(2 * dim, dim, rng), dim);
    for (const bool act_order : {false, true}) {
      const GptqPrepared p = gptq_prepare(h, dim, {.act_order = act_order});
      const auto cpu = gptq_inverse_factor_ref(p);
      const auto gpu = gptq_inverse_factor_cuda(p, nullptr).download();
      float max_abs = 0;
      for (float v : cpu) max_abs = std::max(max_abs, std::fabs(v));
      for (size_t i = 0; i < cpu.size(); ++i) {
        ASSERT_NEAR(gpu[i], cpu[i], 1e-4f * max_abs) << "dim " << dim << " index " << i;
      }
    }
  }
}

struct Case {
  int64_t rows, cols;
  Int4Scheme scheme;
  bool act_order;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  // SmolLM2's K = 576 (g128: a partial last group), its intermediate 1536, odd tails, a group larger than a
  // batch (g256) and one larger than K.
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{64, 576}, {40, 1536}, {9, 100}, {130, 320}}) {
    for (const bool zp : {false, true}) {
      for (const bool act_order : {false, true}) {
        out.push_back({rows, cols, {.granularity = Granularity::Global, .zero_point = zp}, act_order});
        out.push_back({rows, cols, {.granularity = Granularity::Rowwise, .zero_point = zp}, act_order});
        for (const int64_t g : {int64_t{16}, int64_t{48}, int64_t{128}, int64_t{256}, int64_t{4096}}) {
          out.push_back({rows,
                         cols,
                         {.granularity = Granularity::Groupwise, .group_size = g, .zero_point = zp},
                         act_order});
        }
      }
      out.push_back({rows,
                     cols,
                     {.granularity = Granularity::Groupwise,
                      .group_size = 32,
                      .zero_point = zp,
                      .scale_dtype = DType::BF16,
                      .search = ScaleSearch::Mse},
                     false});
    }
  }
  return out;
}

TEST(GptqCuda, ColumnLoopBitExactWithCpuForTheSameFactor) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  // The Hessian and its factor (minutes of CPU reference work over all cases) once per shape and order.
  struct Factored {
    std::vector<float> w;
    GptqPrepared p;
    std::vector<float> u;
  };
  std::map<std::tuple<int64_t, int64_t, bool>, Factored> factored;
  for (const Case& c : cases()) {
    SCOPED_TRACE(::testing::Message()
                 << c.rows << "x" << c.cols << " " << c.scheme.describe() << " act_order " << c.act_order);
    auto [it, added] = factored.try_emplace({c.rows, c.cols, c.act_order});
    if (added) {
      auto x = correlated_inputs(c.cols + 64, c.cols, rng);
      for (int64_t t = 0; t < c.cols + 64; ++t) x[t * c.cols + 3] = 0.0f;  // a dead column
      it->second.w = random_normal<float>(c.rows * c.cols, rng);
      it->second.p = gptq_prepare(hessian_of(x, c.cols), c.cols, {.act_order = c.act_order});
      it->second.u = gptq_inverse_factor_ref(it->second.p);
    }
    const auto& [w, p, u] = it->second;
    const Int4Matrix cpu = gptq_quantize_ref(w, c.rows, c.cols, p, u, c.scheme, 128);
    DeviceBuffer<float> d_u = to_device<float>(u);
    const Int4Matrix gpu = gptq_quantize_cuda(w, c.rows, c.cols, p, d_u.data(), c.scheme, 128, nullptr);
    ASSERT_EQ(gpu.packed, cpu.packed);
    ASSERT_EQ(gpu.scales, cpu.scales);
    ASSERT_EQ(gpu.zeros, cpu.zeros);
  }
}

// The whole GPU solver (its own factor): the output error on calibration inputs is the CPU's within a
// percent and below round to nearest's.
TEST(GptqCuda, SolverOutputErrorMatchesCpu) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  const int64_t rows = 256, cols = 576;
  const auto h = hessian_of(correlated_inputs(1024, cols, rng), cols);
  const auto w = random_normal<float>(rows * cols, rng);
  const Int4Scheme s{.granularity = Granularity::Groupwise, .group_size = 128};
  GptqSolverRef cpu;
  GptqSolverCuda gpu;
  cpu.factor(h, cols, {});
  gpu.factor(h, cols, {});
  const double e_cpu =
      gptq_output_error(w, dequantize_int4_ref(cpu.quantize(w, rows, cols, s, {})), rows, cols, h);
  const double e_gpu =
      gptq_output_error(w, dequantize_int4_ref(gpu.quantize(w, rows, cols, s, {})), rows, cols, h);
  const double e_rtn =
      gptq_output_error(w, dequantize_int4_ref(quantize_int4_ref(w, rows, cols, s)), rows, cols, h);
  EXPECT_NEAR(e_gpu, e_cpu, 0.01 * e_cpu);
  EXPECT_LT(e_gpu, 0.9 * e_rtn);
}

// The calibration pass's products on the GPU (engine/calibration_math.h) against the CPU reference math, on
// odd shapes: fp32 both, so they differ only by the order of the sums.
TEST(GptqCuda, CalibrationMathMatchesCpu) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  const auto cpu = cpu_calibration_math();
  const auto gpu = cuda_calibration_math();
  for (const auto& [tokens, rows, cols] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                                           {37, 70, 96},
                                           {300, 192, 576},
                                           {513, 1536, 576},
                                           {64, 576, 1536}}) {
    SCOPED_TRACE(::testing::Message() << tokens << " x " << cols << " . " << rows << " x " << cols);
    const auto x = correlated_inputs(tokens, cols, rng);
    const auto w = random_normal<float>(static_cast<size_t>(rows * cols), rng);
    std::vector<float> want(7, std::nanf("")), got(3, std::nanf(""));  // wrong sizes and NaN: both resized
    cpu->matmul(want, x, tokens, w, rows, cols);
    gpu->matmul(got, x, tokens, w, rows, cols);
    ASSERT_EQ(got.size(), want.size());
    // Bound: fp32 sums of `cols` products in another order, relative to the sum of their magnitudes.
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        double magnitude = 0;
        for (int64_t k = 0; k < cols; ++k) magnitude += std::fabs(x[t * cols + k] * w[r * cols + k]);
        const size_t i = static_cast<size_t>(t * rows + r);
        ASSERT_TRUE(std::isfinite(got[i])) << i;
        ASSERT_NEAR(got[i], want[i], 1e-5 * magnitude + 1e-30) << "row " << t << " col " << r;
      }
    }
    const auto h_cpu = cpu->hessian(x, cols);
    const auto h_gpu = gpu->hessian(x, cols);
    ASSERT_EQ(h_gpu.size(), h_cpu.size());
    float max_abs = 0;
    for (float v : h_cpu) max_abs = std::max(max_abs, std::fabs(v));
    for (size_t i = 0; i < h_cpu.size(); ++i) ASSERT_NEAR(h_gpu[i], h_cpu[i], 1e-5f * max_abs) << i;

    // AWQ's judge: both quadratic forms through the same H, for a perturbed copy of w.
    std::vector<float> w_hat = w;
    for (float& v : w_hat) v += 0.05f * static_cast<float>(rng.normal());
    const OutputError e_cpu = cpu->output_error(w, w_hat, rows, cols, h_cpu);
    const OutputError e_gpu = gpu->output_error(w, w_hat, rows, cols, h_cpu);
    ASSERT_GT(e_cpu.error, 0.0);
    EXPECT_NEAR(e_gpu.error, e_cpu.error, 1e-3 * e_cpu.error);
    EXPECT_NEAR(e_gpu.reference, e_cpu.reference, 1e-3 * e_cpu.reference);
  }
}

// The calibration attention on the GPU (CausalAttentionF32Cuda) against the CPU reference loops: windows of
// odd lengths (one empty, one of a single token), grouped-query and plain heads, the output poisoned first.
TEST(GptqCuda, CalibrationAttentionMatchesCpu) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  const auto cpu = cpu_calibration_math();
  const auto gpu = cuda_calibration_math();
  for (const auto& [heads, kv_heads, head_dim] :
       {std::tuple<int64_t, int64_t, int64_t>{9, 3, 64}, {4, 4, 16}, {6, 1, 8}}) {
    const std::vector<int64_t> window_start = {0, 37, 37, 38, 167, 679};
    const int64_t tokens = window_start.back();
    SCOPED_TRACE(::testing::Message() << heads << " heads over " << kv_heads << " of " << head_dim);
    // Scores of a few units, as after a norm: the softmax is neither flat nor one-hot.
    auto q = random_normal<float>(static_cast<size_t>(tokens * heads * head_dim), rng);
    const auto k = random_normal<float>(static_cast<size_t>(tokens * kv_heads * head_dim), rng);
    const auto v = random_normal<float>(static_cast<size_t>(tokens * kv_heads * head_dim), rng);
    for (float& x : q) x *= 0.5f;
    std::vector<float> want, got(q.size(), std::nanf(""));
    cpu->attention(want, q, k, v, window_start, heads, kv_heads, head_dim);
    gpu->attention(got, q, k, v, window_start, heads, kv_heads, head_dim);
    ASSERT_EQ(got.size(), want.size());
    // Bound: an average of unit-sized values with weights from fp32 sums in another order.
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << i;
      ASSERT_NEAR(got[i], want[i], 2e-5f * (1.0f + std::fabs(want[i]))) << "value " << i;
    }
  }
}

// The whole layer-by-layer pass on the tiny synthetic model with its products on the GPU, beside the same pass
// on the CPU reference math (same solver): each linear's GPTQ output error within a few percent (the Hessians
// differ in rounding, which may move a weight to the next level), below round to nearest's overall; and the
// AWQ + GPTQ pass runs on the GPU products too.
TEST(GptqCuda, ModelPassWithGpuProductsMatchesCpu) {
  QLLM_SKIP_WITHOUT_GPU();
  testing::TempDir dir;
  write_synthetic_checkpoint({.preset = "tiny", .out_dir = dir.str(), .seed = 11});
  LoadOptions lo;
  lo.device = DeviceKind::Cpu;
  lo.verbose = false;
  const LoadedModel m = load_model(dir.str(), lo);
  const auto& ref = dynamic_cast<const LlamaRefModel&>(*m.model);
  const auto windows =
      calibration_windows(*m.model, m.tokenizer, {.source = "self", .samples = 4, .length = 48, .seed = 2});
  GptqSolverRef solver;
  GptqModelOptions o;
  o.scheme = {.granularity = Granularity::Groupwise, .group_size = 32};
  o.report = true;
  const GptqModelResult on_cpu = gptq_quantize_model(ref.config(), ref.weights(), windows, solver, o);
  const auto gpu = cuda_calibration_math();
  o.math = gpu.get();
  const GptqModelResult on_gpu = gptq_quantize_model(ref.config(), ref.weights(), windows, solver, o);
  ASSERT_EQ(on_gpu.report.size(), on_cpu.report.size());
  ASSERT_EQ(on_gpu.layers.size(), on_cpu.layers.size());
  double rtn = 0, gptq = 0;
  for (size_t i = 0; i < on_cpu.report.size(); ++i) {
    const GptqLinearReport &a = on_cpu.report[i], &b = on_gpu.report[i];
    SCOPED_TRACE(a.name);
    ASSERT_TRUE(std::isfinite(b.gptq_output_error) && std::isfinite(b.rtn_output_error));
    EXPECT_NEAR(b.rtn_output_error, a.rtn_output_error, 0.01 * a.rtn_output_error);
    EXPECT_NEAR(b.gptq_output_error, a.gptq_output_error, 0.05 * a.gptq_output_error);
    rtn += b.rtn_output_error;
    gptq += b.gptq_output_error;
  }
  EXPECT_LT(gptq, 0.95 * rtn);

  o.awq = true;
  o.report = false;
  const GptqModelResult scaled = gptq_quantize_model(ref.config(), ref.weights(), windows, solver, o);
  ASSERT_EQ(scaled.layers.size(), on_cpu.layers.size());
  for (const GptqLayer& l : scaled.layers) {
    ASSERT_EQ(static_cast<int64_t>(l.attn_norm.size()), ref.config().hidden_size);
    for (float v : l.attn_norm) ASSERT_TRUE(std::isfinite(v) && v != 0.0f);
  }
}

TEST(GptqCuda, NotPositiveDefiniteIsAnError) {
  QLLM_SKIP_WITHOUT_GPU();
  const std::vector<float> rank_one(16, 1.0f);
  const GptqPrepared p = gptq_prepare(rank_one, 4, {.percdamp = 0});
  EXPECT_NE(testing::error_of([&] { gptq_inverse_factor_cuda(p, nullptr); }).find("not positive definite"),
            std::string::npos);
}

}  // namespace
}  // namespace qllm
