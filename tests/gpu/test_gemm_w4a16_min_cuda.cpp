// Op-harness rows of the W4A16 GEMM on min-offset weights (GGUF Q4_1: w' = u * s + m), every kernel the plan
// may choose for them (skinny, tiled, dequant + cuBLAS, wgmma in groups of 32 on sm_90a, and auto's choice)
// against the CPU reference of the kernel's own weight precision (quant/w4a16_layout.h: skinny exact, the
// others rounded to the activation dtype), bf16 and f16, over SmolLM2-135M's shapes (q/o 576 x 576, k/v
// 192 x 576, gate/up 1536 x 576, down 576 x 1536, a Q4_1 lm_head 49152 x 576) and odd ones (partial last
// groups, N and K not multiples of 64, K not a multiple of 8), M = 1, 7, 16, 33, 128, 512.
//
// Y is poisoned (NaN) with a guard after it that must stay poisoned; X is followed by NaNs (a read past K
// poisons a row). Bound: relative Frobenius error 2e-3 against the reference rounded like the output, the
// bound of test_gemm_w4a16_cuda.cpp (what remains is fp32 accumulation order: a near-tie flips an output by
// one ulp of the activation dtype, 2^-8 relative at most in bf16). The min offset adds fp32 sums of
// activations per group (skinny) or an fma per weight pair (tiled, wgmma: u * s + m rounded once; the
// reference rounds ggml's f32 value, the same number unless m and u * s lie many binades apart, not here).
// Large products compare a strided subset of the weight rows (the reference is O(M N K) in double on the
// CPU); every output is still checked to be written and finite.
#include <fmt/format.h>

#include <cmath>

#include "kernels/gemm/w4a16.h"
#include "qllm/error.h"
#include "quant/w4a16_layout.h"
#include "tests/cpu/q4_gguf_test_support.h"
#include "tests/gpu/op_harness.h"
#include "tests/gpu/ops_test_util.h"

namespace qllm::testing {
namespace {

constexpr size_t kGuard = 1024;                           // poisoned values after Y, NaNs after X
constexpr int64_t kFullReferenceWork = int64_t{1} << 24;  // M * N * K up to here: every output compared

// `splits`: 0 the plan's own, else forced (split-K partials and their reduction).
OpResult run_min_gemm(int64_t n, int64_t k, int64_t g, int64_t m, W4A16Kernel kernel, DType dtype, int splits,
                      uint64_t seed) {
  if (kernel == W4A16Kernel::Wgmma && !sm90a_kernels_available())
    return {0.0, "no sm_90a GPU: no wgmma kernel"};
  Rng rng(seed);
  const W4A16Weights packed = repack_w4a16(random_min_offset(n, k, g, dtype, rng), dtype);
  const W4A16DeviceWeights device_w = W4A16DeviceWeights::upload(packed);
  std::vector<uint16_t> x_bits = random_bits16(static_cast<size_t>(m * k), rng, dtype);
  const std::vector<float> x_values = bits16_to_floats(x_bits, dtype);
  x_bits.resize(x_bits.size() + kGuard, dtype == DType::BF16 ? 0x7fc0 : 0x7e00);  // NaN after X
  const auto x = to_device(x_bits);

  W4A16Gemm gemm;
  gemm.tuning.splits = splits;
  gemm.reserve(device_w.layout, m, kernel);
  DeviceBuffer<uint16_t> y(static_cast<size_t>(m * n) + kGuard, "Y");
  poison(y);
  gemm.run(x.data(), device_w, y.data(), m, nullptr, kernel);
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<uint16_t> bits = y.download();
  for (size_t i = static_cast<size_t>(m * n); i < bits.size(); ++i) {
    if (bits[i] != 0xffff) return {INFINITY, fmt::format("written past Y at {}", i)};
  }
  const std::vector<float> got_all =
      bits16_to_floats(std::vector<uint16_t>(bits.begin(), bits.begin() + m * n), dtype);
  for (size_t i = 0; i < got_all.size(); ++i) {
    if (!std::isfinite(got_all[i])) return {INFINITY, fmt::format("output {} not written or not finite", i)};
  }

  // The weight rows compared: all, or every stride-th of a large product (with the last one).
  const int64_t stride = std::max<int64_t>(1, m * n * k / kFullReferenceWork);
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < n; r += stride) rows.push_back(r);
  if (rows.back() != n - 1) rows.push_back(n - 1);
  const W4A16Plan plan = gemm.plan(m, device_w.layout, kernel);
  const W4A16Precision precision =
      plan.kernel == W4A16Kernel::Skinny ? W4A16Precision::Exact : W4A16Precision::RoundedWeights;
  if (plan.kernel == W4A16Kernel::Wgmma && g != 32)
    return {INFINITY, fmt::format("the plan chose wgmma for min-offset weights in groups of {}", g)};
  std::vector<float> got, ref;
  if (stride == 1) {
    ref = gemm_w4a16_ref(x_values, m, packed, precision);
    got = got_all;
  } else {
    for (int64_t t = 0; t < m; ++t) {
      for (const int64_t r : rows) {
        ref.push_back(static_cast<float>(gemm_w4a16_ref_element(x_values, packed, t, r, precision)));
        got.push_back(got_all[static_cast<size_t>(t * n + r)]);
      }
    }
  }
  for (float& v : ref) v = bits16_to_float(float_to_bits16(v, dtype), dtype);  // as the output holds it
  OpResult result = compare(got, ref, Metric::RelFro);
  result.detail += fmt::format(" (kernel {})", w4a16_kernel_name(plan.kernel));
  return result;
}

QLLM_OP_CASES(w4a16_min_offset) {
  struct Shape {
    int64_t n, k, g;
  };
  const Shape shapes[] = {{576, 576, 32}, {192, 576, 32}, {1536, 576, 32}, {576, 1536, 32}, {49152, 576, 32},
                          {272, 200, 32}, {201, 136, 16}, {200, 100, 32},  {96, 576, 128},  {130, 34, 0}};
  std::vector<OpCase> cases;
  uint64_t seed = 1900;
  for (const Shape& s : shapes) {
    for (const W4A16Kernel kernel : {W4A16Kernel::Auto, W4A16Kernel::Skinny, W4A16Kernel::Tiled,
                                     W4A16Kernel::Dequant, W4A16Kernel::Wgmma}) {
      if (kernel == W4A16Kernel::Wgmma && s.g != 32)
        continue;  // Q4_1's groups only (the plan refuses others)
      for (const DType dtype : {DType::BF16, DType::F16}) {
        for (const int64_t m : {1, 7, 16, 33, 128, 512}) {
          // The lm_head shape is for the kernels decode and prefill use on it (skinny, auto).
          if (s.n == 49152 && m > 16 && kernel == W4A16Kernel::Skinny) continue;
          cases.push_back({"w4a16_min_offset",
                           fmt::format("{} tokens={} n={} k={} g={}", w4a16_kernel_name(kernel), m, s.n, s.k,
                                       s.g ? s.g : s.k),
                           dtype_label(dtype), Metric::RelFro, 2e-3, [=, seed = seed++] {
                             return run_min_gemm(s.n, s.k, s.g, m, kernel, dtype, 0, seed);
                           }});
        }
      }
    }
  }
  // Forced split-K: the skinny kernel's last-CTA finish, the tiled kernel's cluster (or memory) reduction and
  // the wgmma kernel's reduction pass add partial sums that each carry their groups' minimum terms.
  for (const Shape& s : {Shape{576, 576, 32}, Shape{576, 1536, 32}, Shape{200, 136, 16}}) {
    for (const W4A16Kernel kernel : {W4A16Kernel::Skinny, W4A16Kernel::Tiled, W4A16Kernel::Wgmma}) {
      if (kernel == W4A16Kernel::Wgmma && s.g != 32) continue;
      for (const int64_t m : {7, 33, 200}) {
        cases.push_back(
            {"w4a16_min_offset",
             fmt::format("{} splits=2 tokens={} n={} k={} g={}", w4a16_kernel_name(kernel), m, s.n, s.k, s.g),
             "f16", Metric::RelFro, 2e-3,
             [=, seed = seed++] { return run_min_gemm(s.n, s.k, s.g, m, kernel, DType::F16, 2, seed); }});
      }
    }
  }
  return cases;
}

// The wgmma kernel refuses min-offset weights in other groups than 32 by name, and Auto never gives it them
// (checked in every row above).
QLLM_OP_CASES(w4a16_min_offset_wgmma_refused) {
  return {{"w4a16_min_offset", "wgmma refused n=576 k=576 g=16", "f16", Metric::MaxAbs, 0, [] {
             if (!sm90a_kernels_available()) return OpResult{0.0, "no sm_90a GPU: no wgmma kernel to refuse"};
             Rng rng(7);
             const W4A16Weights packed =
                 repack_w4a16(random_min_offset(576, 576, 16, DType::F16, rng), DType::F16);
             W4A16Gemm gemm;
             try {
               (void)gemm.plan(256, packed.layout, W4A16Kernel::Wgmma);
             } catch (const Error& e) {
               const bool named = std::string(e.what()).find("groups of 32 only") != std::string::npos;
               return OpResult{named ? 0.0 : 1.0, e.what()};
             }
             return OpResult{1.0, "planned"};
           }}};
}

}  // namespace
}  // namespace qllm::testing
