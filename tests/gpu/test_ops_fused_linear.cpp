// Op-harness rows of QuantLinear::forward_fused (kernels/gemm/x_prologue.h): an INT4 GEMM that computes its
// input itself, the RMSNorm (with the residual add, and without: the first layer) or the SwiGLU before it
// folded into its launch. Each row checks three things and fails on any:
//   - the output against the CPU references chained (rmsnorm_ref or swiglu_ref, then CpuLinear on the same
//     dequantized weights): relative Frobenius error <= 8e-3, the bound of the quant_linear rows;
//   - the output against the unfused GPU pair (launch_rmsnorm / launch_swiglu, then forward()): relative
//     Frobenius error <= 1e-3 (the same arithmetic: equal, unless a reduction order moves an inv_rms by an
//     f32 ulp);
//   - the updated residual written by the fold: exactly rmsnorm_ref's.
// Shapes: Llama-3.2-1B's (hidden 2048, intermediate 8192: the down projection splits K across CTAs),
// SmolLM2-135M's (K = 576 with N = 960 fused q/k/v, 192 a k or v projection, 49152 the lm_head; down 576 x
// 1536), K not a multiple of 64 (200) and the largest folded norm (4096); M from 1 to 8 (one 8-token CTA per
// N tile), every INT4 scheme family.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <utility>
#include <vector>

#include "kernels/elementwise/swiglu.h"
#include "kernels/gemm/quant_linear.h"
#include "kernels/norm/rmsnorm.h"
#include "model/cpu_linear.h"
#include "tests/gpu/op_harness.h"
#include "tests/gpu/ops_test_util.h"
#include "tests/support/test_util.h"

namespace qllm::testing {
namespace {

constexpr double kGpuPairBound = 1e-3;

enum class Fold { Norm, NormFirstLayer, Swiglu };
const char* fold_name(Fold f) {
  return f == Fold::Norm ? "rmsnorm" : f == Fold::NormFirstLayer ? "rmsnorm-nodelta" : "swiglu";
}

// Worst of `primary` and a side check that must hold (its failure becomes the row's failure).
OpResult with_check(OpResult primary, const OpResult& side, double bound, const std::string& what) {
  if (!(side.error <= bound)) return {INFINITY, fmt::format("{}: {} ({})", what, side.error, side.detail)};
  return primary;
}

OpResult run_fused(int64_t n, int64_t k, int64_t m, const std::string& mode_name, Fold fold, uint64_t seed) {
  Rng rng(seed);
  const DType dtype = DType::BF16;
  std::vector<float> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = static_cast<float>(0.05 * rng.normal());
  const QuantMode mode = QuantMode::parse(mode_name);
  const auto count = static_cast<size_t>(m * k);

  // Inputs of the folded op, and X as the CPU reference computes it (16-bit bits).
  std::vector<float> residual(count), norm_weight(static_cast<size_t>(k));
  std::vector<uint16_t> delta, gate_up, x_ref(count);
  std::vector<float> residual_ref;
  if (fold == Fold::Swiglu) {
    gate_up = random_bits16(2 * count, rng, dtype, 2.0);
    swiglu_ref(SwigluParams{
        .tokens = m, .intermediate = k, .dtype = dtype, .gate_up = gate_up.data(), .out = x_ref.data()});
  } else {
    for (float& r : residual) r = static_cast<float>(3.0 * rng.normal());
    for (float& v : norm_weight)
      v = bits16_to_float(float_to_bits16(static_cast<float>(1 + 0.2 * rng.normal()), dtype), dtype);
    if (fold == Fold::Norm) delta = random_bits16(count, rng, dtype, 2.0);
    residual_ref = residual;
    rmsnorm_ref(RmsNormParams{.tokens = m,
                              .hidden = k,
                              .eps = 1e-5,
                              .dtype = dtype,
                              .residual = residual_ref.data(),
                              .delta = delta.empty() ? nullptr : delta.data(),
                              .weight = norm_weight.data(),
                              .out = x_ref.data()});
  }
  std::vector<float> ref(static_cast<size_t>(m * n));
  const CpuLinear reference(WeightMatrix{"w", DType::F32, w.data(), n, k}, mode, dtype);
  reference.forward(ref.data(), bits16_to_floats(x_ref, dtype).data(), m);

  TestStream stream;
  GemmExecutor executor;
  executor.w4a16.tuning.fused_prologue_up_to_tokens = 8;  // every M of the skinny kernel's 8-token CTAs
  QuantLinear layer(HostWeight{w.data(), DType::F32, n, k}, mode, dtype, stream.get());
  layer.reserve(executor, m);
  DeviceBuffer<float> d_residual = to_device(residual), d_weight = to_device(norm_weight);
  DeviceBuffer<float> d_residual_out(count), d_residual_unfused = to_device(residual);
  DeviceBuffer<uint16_t> d_delta = to_device(delta.empty() ? std::vector<uint16_t>(1) : delta);
  DeviceBuffer<uint16_t> d_gate_up = to_device(gate_up.empty() ? std::vector<uint16_t>(1) : gate_up);
  DeviceBuffer<uint16_t> d_x(count), d_y(static_cast<size_t>(m * n)), d_y_unfused(static_cast<size_t>(m * n));
  poison(d_y);
  poison(d_y_unfused);
  poison(d_residual_out);

  XPrologue prologue;
  if (fold == Fold::Swiglu) {
    prologue.kind = XPrologueKind::Swiglu;
    prologue.gate_up = d_gate_up.data();
  } else {
    prologue.kind = XPrologueKind::ResidualRmsNorm;
    prologue.residual = d_residual.data();
    prologue.delta = fold == Fold::Norm ? d_delta.data() : nullptr;
    prologue.residual_out = d_residual_out.data();
    prologue.norm_weight = d_weight.data();
    prologue.eps = 1e-5;
  }
  if (!layer.forward_fused(executor, prologue, d_y.data(), m, stream.get())) {
    return {INFINITY, "forward_fused refused a shape it should fold"};
  }
  // The unfused pair on the same inputs.
  if (fold == Fold::Swiglu) {
    launch_swiglu(
        SwigluParams{
            .tokens = m, .intermediate = k, .dtype = dtype, .gate_up = d_gate_up.data(), .out = d_x.data()},
        stream.get());
  } else {
    launch_rmsnorm(RmsNormParams{.tokens = m,
                                 .hidden = k,
                                 .eps = 1e-5,
                                 .dtype = dtype,
                                 .residual = d_residual_unfused.data(),
                                 .delta = prologue.delta,
                                 .weight = d_weight.data(),
                                 .out = d_x.data()},
                   stream.get());
  }
  layer.forward(executor, d_x.data(), d_y_unfused.data(), m, stream.get());
  stream.sync();

  const std::vector<float> got = bits16_to_floats(d_y.download(), dtype);
  OpResult r = compare(got, ref, Metric::RelFro);
  r = with_check(r, compare(got, bits16_to_floats(d_y_unfused.download(), dtype), Metric::RelFro),
                 kGpuPairBound, "fused and unfused GPU outputs differ");
  if (fold == Fold::Norm) {
    r = with_check(r, compare(d_residual_out.download(), residual_ref, Metric::MaxAbs), 0.0,
                   "the residual written by the fold differs from rmsnorm_ref's");
  }
  return r;
}

QLLM_OP_CASES(quant_linear_fused) {
  std::vector<OpCase> cases;
  uint64_t seed = 2100;
  // (N, K) per fold: the norm feeds qkv / gate_up / lm_head-like rows of K = hidden; SwiGLU feeds down.
  using Shapes = std::vector<std::pair<int64_t, int64_t>>;
  const Shapes norm_shapes = {{3072, 2048}, {960, 576}, {192, 576}, {49152, 576}, {272, 200}, {512, 4096}};
  const Shapes swiglu_shapes = {{2048, 8192}, {576, 1536}, {136, 200}};
  for (const char* mode : {"int4-g128", "int4-g32-asym", "int4-rowwise"}) {
    for (const int64_t m : {1, 3, 8}) {
      for (Fold fold : {Fold::Norm, Fold::NormFirstLayer, Fold::Swiglu}) {
        const bool swiglu = fold == Fold::Swiglu;
        for (const auto& [n, k] : swiglu ? swiglu_shapes : norm_shapes) {
          if (fold == Fold::NormFirstLayer && k != 576) continue;  // one shape suffices for the no-add form
          cases.push_back(
              {"quant_linear_fused", fmt::format("{} tokens={} n={} k={}", fold_name(fold), m, n, k), mode,
               Metric::RelFro, 8e-3, [=, s = seed++] { return run_fused(n, k, m, mode, fold, s); }});
        }
      }
    }
  }
  return cases;
}

// Where the GEMM cannot compute X itself, forward_fused enqueues nothing and says so: dense and int8 layers,
// M past the bound (or past the 8-token CTAs), K not a multiple of 8, a norm over more than 4096 values.
TEST(QuantLinearFused, RefusesWhatItCannotFold) {
  QLLM_SKIP_WITHOUT_GPU();
  TestStream stream;
  auto layer = [&](int64_t n, int64_t k, const char* mode) {
    std::vector<float> w(static_cast<size_t>(n * k), 0.01f);
    return QuantLinear(HostWeight{w.data(), DType::F32, n, k}, QuantMode::parse(mode), DType::BF16,
                       stream.get());
  };
  GemmExecutor executor;
  executor.w4a16.tuning.fused_prologue_up_to_tokens = 8;
  DeviceBuffer<float> residual(16 * 8192), weight(8192);
  DeviceBuffer<uint16_t> gate_up(16 * 2 * 8192), y(16 * 512);
  XPrologue norm{
      .kind = XPrologueKind::ResidualRmsNorm, .residual = residual.data(), .norm_weight = weight.data()};
  XPrologue swiglu{.kind = XPrologueKind::Swiglu, .gate_up = gate_up.data()};
  const QuantLinear int4 = layer(512, 576, "int4-g128"), bf16 = layer(512, 576, "bf16"),
                    int8 = layer(512, 576, "int8"), odd_k = layer(512, 100, "int4-g128"),
                    long_k = layer(512, 4104, "int4-g128");
  for (const QuantLinear* l : {&int4, &bf16, &int8, &odd_k, &long_k}) l->reserve(executor, 16);
  EXPECT_TRUE(int4.forward_fused(executor, norm, y.data(), 8, stream.get()));
  EXPECT_TRUE(int4.forward_fused(executor, swiglu, y.data(), 1, stream.get()));
  EXPECT_FALSE(int4.forward_fused(executor, norm, y.data(), 9, stream.get()));  // 16-token CTAs
  EXPECT_FALSE(int4.forward_fused(executor, XPrologue{}, y.data(), 1, stream.get()));
  EXPECT_FALSE(bf16.forward_fused(executor, norm, y.data(), 1, stream.get()));
  EXPECT_FALSE(int8.forward_fused(executor, swiglu, y.data(), 1, stream.get()));
  EXPECT_FALSE(odd_k.forward_fused(executor, swiglu, y.data(), 1, stream.get()));
  EXPECT_FALSE(long_k.forward_fused(executor, norm, y.data(), 1, stream.get()));
  EXPECT_TRUE(long_k.forward_fused(executor, swiglu, y.data(), 1, stream.get()));  // no row-wide reduction
  executor.w4a16.tuning.fused_prologue_up_to_tokens = 2;
  EXPECT_FALSE(int4.forward_fused(executor, norm, y.data(), 3, stream.get()));
  stream.sync();
}

}  // namespace
}  // namespace qllm::testing
