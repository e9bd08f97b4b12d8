// W4A16 GEMM kernels against the CPU reference (which reads the same repacked bytes) and against cuBLAS on
// the dequantized weights. Fresh random inputs per case, outputs poisoned (NaN) before every run.
//
// Bounds (relative Frobenius error over the compared elements):
//  - vs the matching CPU reference rounded to bf16 like the output: 2e-3. Each kernel is compared with the
//    reference of its own weight precision (skinny: exact (q - z) * s; tiled, wgmma, dequant: weights
//    rounded to bf16 once, as tensor-core operands). What remains is fp32 accumulation order, which flips an
//    output by one bf16 ulp (2^-7 relative at most) only on the rare near-ties: typically ~1e-4.
//  - vs cuBLAS on bf16-rounded dequantized weights: 2e-3 for the others (the same weights: near-tie flips);
//    4e-3 for skinny, whose exact weights differ from the rounded ones by up to 2^-8 relative each (about
//    1e-3 on a dot product), on top of the two outputs' bf16 roundings (about 1.6e-3 each, uniform over a
//    binade).
#include <gtest/gtest.h>

#include <cmath>

#include "bench/bench_kernels.h"
#include "kernels/gemm/cublas_gemm.h"
#include "kernels/gemm/w4a16.h"
#include "kernels/gemm/w4a16_launch.h"
#include "kernels/quantize/quantize_int4.h"
#include "qllm/error.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;
using testing::fresh_seed;

constexpr double kRefBound = 2e-3;

std::vector<W4A16Kernel> kernels_here() {
  std::vector<W4A16Kernel> out = {W4A16Kernel::Skinny, W4A16Kernel::Tiled, W4A16Kernel::Dequant};
  if (sm90a_kernels_available()) out.push_back(W4A16Kernel::Wgmma);
  return out;
}

W4A16Precision precision_of(W4A16Kernel k) {
  return k == W4A16Kernel::Skinny ? W4A16Precision::Exact : W4A16Precision::RoundedWeights;
}

Int4Scheme mode(Granularity g, int64_t group, bool zero_point) {
  return {.granularity = g,
          .group_size = group,
          .zero_point = zero_point,
          .scale_dtype = DType::BF16,
          .search = ScaleSearch::Mse};
}

// W ~ N(0, 0.02^2) [n, k], quantized with `scheme` (scales in the activation dtype) and repacked.
W4A16Weights random_packed_weights(int64_t n, int64_t k, Int4Scheme scheme, Rng& rng,
                                   DType activation = DType::BF16) {
  std::vector<float> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = static_cast<float>(0.02 * rng.normal());
  scheme.scale_dtype = activation;
  return repack_w4a16(quantize_int4_ref(w, n, k, scheme), activation);
}

// X ~ N(0, 1) as bf16 bits.
std::vector<uint16_t> random_activation_bits(int64_t count, Rng& rng) {
  std::vector<uint16_t> x(static_cast<size_t>(count));
  for (auto& v : x) v = float_to_bf16_bits(static_cast<float>(rng.normal()));
  return x;
}

double rel_fro(std::span<const float> got, std::span<const float> ref) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    diff += d * d;
    norm += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(diff / norm);  // NaN when any output is NaN: never passes a <= bound
}

// The reference as the kernel's output would hold it: rounded once to bf16.
std::vector<float> rounded_to_bf16(std::vector<float> v) {
  for (auto& x : v) x = bf16_bits_to_float(float_to_bf16_bits(x));
  return v;
}

std::vector<float> bf16_to_float(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_bits_to_float(v[i]);
  return out;
}

// Runs the kernel on a poisoned output and downloads it (as floats, from the activation dtype).
std::vector<float> run_gemm(W4A16Gemm& gemm, const DeviceBuffer<uint16_t>& x, int64_t m,
                            const W4A16DeviceWeights& w, W4A16Kernel kernel) {
  DeviceBuffer<uint16_t> y(static_cast<size_t>(m * w.layout.n), "Y");
  y.fill_bytes(0xff);
  gemm.reserve(w.layout, m, kernel);
  gemm.run(x.data(), w, y.data(), m, nullptr, kernel);
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<uint16_t> bits = y.download();
  if (w.layout.activation == DType::BF16) return bf16_to_float(bits);
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = half_bits_to_float(bits[i]);
  return out;
}

// Small and odd-but-valid shapes, every M of the sweep, every mode: the full output against the full CPU
// reference.
TEST(GemmW4A16Cuda, SmallShapesMatchTheReference) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  W4A16Gemm gemm;
  const std::vector<int64_t> ms = {1, 2, 3, 5, 8, 15, 16, 17, 31, 33, 64, 100, 128, 129, 256};
  for (auto [n, k] :
       std::vector<std::pair<int64_t, int64_t>>{{64, 64}, {128, 192}, {320, 448}, {192, 1024}}) {
    for (const Int4Scheme& s :
         {mode(Granularity::Global, 0, false), mode(Granularity::Rowwise, 0, true),
          mode(Granularity::Groupwise, 16, true), mode(Granularity::Groupwise, 32, false),
          mode(Granularity::Groupwise, 64, true), mode(Granularity::Groupwise, 128, false),
          mode(Granularity::Groupwise, 256, true)}) {
      if (s.granularity == Granularity::Groupwise && k % s.group_size != 0) continue;
      const W4A16Weights packed = random_packed_weights(n, k, s, rng);
      const W4A16DeviceWeights device_w = W4A16DeviceWeights::upload(packed);
      for (int64_t m : ms) {
        const std::vector<uint16_t> x_bits = random_activation_bits(m * k, rng);
        const auto x = to_device(std::span<const uint16_t>(x_bits), "X");
        const std::vector<float> x_values = bf16_to_float(x_bits);
        for (W4A16Kernel kernel : kernels_here()) {
          SCOPED_TRACE(fmt::format("[{}, {}] {} M={} {}", n, k, s.describe(), m, w4a16_kernel_name(kernel)));
          const auto ref = rounded_to_bf16(gemm_w4a16_ref(x_values, m, packed, precision_of(kernel)));
          const auto got = run_gemm(gemm, x, m, device_w, kernel);
          ASSERT_LE(rel_fro(got, ref), kRefBound);
        }
      }
    }
  }
}

// The five Llama-3.2-1B shapes at every M of the sweep: the whole output against cuBLAS on the dequantized
// weights, and 256 sampled elements against the CPU reference.
TEST(GemmW4A16Cuda, LlamaShapesMatchCublasAndTheReference) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  W4A16Gemm gemm;
  CublasGemm cublas;
  const std::vector<int64_t> ms = {1, 2, 3, 5, 8, 15, 16, 17, 31, 33, 64, 100, 128, 129, 256, 512, 2048};
  for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{
           {128256, 2048}, {2048, 2048}, {512, 2048}, {8192, 2048}, {2048, 8192}}) {
    std::vector<Int4Scheme> modes = {mode(Granularity::Groupwise, 128, false),
                                     mode(Granularity::Groupwise, 64, true)};
    if (n < 100000) {
      modes.push_back(mode(Granularity::Global, 0, false));
      modes.push_back(mode(Granularity::Rowwise, 0, true));
      modes.push_back(mode(Granularity::Groupwise, 32, false));
      modes.push_back(mode(Granularity::Groupwise, 256, false));
    }
    DeviceBuffer<uint16_t> w(static_cast<size_t>(n * k), "W");
    bench::fill_normal_device(w.data(), DType::BF16, n * k, rng.next_u64(), 0.f, 0.02f);
    for (const Int4Scheme& s : modes) {
      Int4DeviceMatrix q(n, k, s);
      Int4QuantizerCuda quantizer;
      quantizer.launch(w.data(), DType::BF16, n, k, s, q.view(), nullptr);
      quantizer.check(nullptr);
      const W4A16Weights packed = repack_w4a16(q.download(), DType::BF16);
      const W4A16DeviceWeights device_w = W4A16DeviceWeights::upload(packed);
      DeviceBuffer<uint16_t> dequantized(static_cast<size_t>(n * k), "dequantized W");
      launch_dequantize_int4(q.packed.data(), q.scales.data(), q.zeros.data(), n, k, s, dequantized.data(),
                             DType::BF16, nullptr);
      for (int64_t m : ms) {
        DeviceBuffer<uint16_t> x(static_cast<size_t>(m * k), "X");
        bench::fill_normal_device(x.data(), DType::BF16, m * k, rng.next_u64(), 0.f, 1.f);
        DeviceBuffer<uint16_t> y_ref(static_cast<size_t>(m * n), "Y cuBLAS");
        cublas.run(x.data(), dequantized.data(), y_ref.data(), m, n, k, DType::BF16, nullptr);
        const std::vector<float> x_values = bf16_to_float(x.download());
        for (W4A16Kernel kernel : kernels_here()) {
          SCOPED_TRACE(fmt::format("[{}, {}] {} M={} {}", n, k, s.describe(), m, w4a16_kernel_name(kernel)));
          DeviceBuffer<uint16_t> y(static_cast<size_t>(m * n), "Y");
          y.fill_bytes(0xff);
          gemm.reserve(device_w.layout, m, kernel);
          gemm.run(x.data(), device_w, y.data(), m, nullptr, kernel);
          const bench::DiffStats d = bench::diff_stats_device(y.data(), y_ref.data(), DType::BF16, m * n);
          ASSERT_EQ(d.nonfinite, 0u);
          ASSERT_LE(d.rel_fro(), kernel == W4A16Kernel::Skinny ? 4e-3 : 2e-3);

          const std::vector<float> got = bf16_to_float(y.download());
          std::vector<float> sampled_got, sampled_ref;
          for (int i = 0; i < 256; ++i) {
            const int64_t row = static_cast<int64_t>(rng.below(static_cast<uint64_t>(m)));
            const int64_t col = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n)));
            sampled_got.push_back(got[static_cast<size_t>(row * n + col)]);
            sampled_ref.push_back(
                static_cast<float>(gemm_w4a16_ref_element(x_values, packed, row, col, precision_of(kernel))));
          }
          ASSERT_LE(rel_fro(sampled_got, rounded_to_bf16(sampled_ref)), kRefBound);
        }
      }
    }
  }
}

// Every kernel instantiation (token tile, K split across warps and across CTAs) on one odd-but-valid shape.
TEST(GemmW4A16Cuda, EveryConfigurationMatchesTheReference) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  const int64_t n = 320, k = 448;  // 20 row tiles, 7 k steps: uneven splits everywhere
  const W4A16Weights packed = random_packed_weights(n, k, mode(Granularity::Groupwise, 64, true), rng);
  const W4A16DeviceWeights device_w = W4A16DeviceWeights::upload(packed);
  W4A16Gemm gemm;
  for (int64_t m : {1, 9, 17, 33, 100}) {  // 100: both halves of the split-token wgmma tile
    const std::vector<uint16_t> x_bits = random_activation_bits(m * k, rng);
    const auto x = to_device(std::span<const uint16_t>(x_bits), "X");
    const std::vector<float> x_values = bf16_to_float(x_bits);
    for (W4A16Kernel kernel : kernels_here()) {
      const auto ref = rounded_to_bf16(gemm_w4a16_ref(x_values, m, packed, precision_of(kernel)));
      if (kernel == W4A16Kernel::Dequant) {  // no configurations: a dequantization pass and cuBLAS
        gemm.tuning = {};
        ASSERT_LE(rel_fro(run_gemm(gemm, x, m, device_w, kernel), ref), kRefBound) << "dequant M=" << m;
        continue;
      }
      const bool skinny = kernel == W4A16Kernel::Skinny;
      // Skinny: tokens x warps splitting K; tiled: tokens; wgmma: tokens x rows (0: the token tile's own).
      std::vector<int> tokens = {64, 128, 256}, warps_k = {0}, rows = {0};
      if (skinny) tokens = {8, 16, 32}, warps_k = {1, 2, 4, 8};
      if (kernel == W4A16Kernel::Tiled) tokens = {32, 64, 128};
      if (kernel == W4A16Kernel::Wgmma) rows = {0, 64};
      for (int tok : tokens) {
        for (int v : warps_k) {
          for (int r : rows) {
            if (r == 64 && tok != 128) continue;  // 64-row tiles split 128 tokens
            for (int splits : {1, 2, 3}) {
              SCOPED_TRACE(fmt::format("M={} {} tokens {} rows {} warps_k {} splits {}", m,
                                       w4a16_kernel_name(kernel), tok, r, v, splits));
              gemm.tuning = {.tokens_per_cta = tok, .rows_per_cta = r, .warps_k = v, .splits = splits};
              ASSERT_LE(rel_fro(run_gemm(gemm, x, m, device_w, kernel), ref), kRefBound);
            }
          }
        }
      }
    }
  }
}

// Split-K: the tiled kernel's splits reduce inside a thread-block cluster on sm_90 (up to 8); more splits,
// GPUs without clusters and the wgmma kernel take the partial-sums path. Against the reference, asymmetric
// g32 scales.
TEST(GemmW4A16Cuda, SplitKPathsMatchTheReference) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  const int64_t n = 192, k = 1536;  // 24 k steps: 3, 8, 12 and 24 splits divide them evenly
  const W4A16Weights packed = random_packed_weights(n, k, mode(Granularity::Groupwise, 32, true), rng);
  const W4A16DeviceWeights device_w = W4A16DeviceWeights::upload(packed);
  W4A16Gemm gemm;
  std::vector<W4A16Kernel> kernels = {W4A16Kernel::Tiled};
  if (sm90a_kernels_available()) kernels.push_back(W4A16Kernel::Wgmma);
  for (W4A16Kernel kernel : kernels) {
    for (int64_t m : {5, 70}) {
      const std::vector<uint16_t> x_bits = random_activation_bits(m * k, rng);
      const auto x = to_device(std::span<const uint16_t>(x_bits), "X");
      const auto ref =
          rounded_to_bf16(gemm_w4a16_ref(bf16_to_float(x_bits), m, packed, precision_of(kernel)));
      for (int splits : {3, 8, 12, 24}) {
        SCOPED_TRACE(fmt::format("{} M={} splits {}", w4a16_kernel_name(kernel), m, splits));
        gemm.tuning = {.splits = splits};
        const W4A16Plan plan = gemm.plan(m, device_w.layout, kernel);
        ASSERT_EQ(plan.splits, splits);
        // Up to 8 splits add up in a cluster where the GPU can (sm_90), more through partials in memory.
        const bool cluster = kernel == W4A16Kernel::Tiled && splits <= kernels::kTiledMaxClusterSplits &&
                             kernels::w4a16_tiled_cluster_reduction_available();
        ASSERT_EQ(plan.cluster_splits, cluster ? splits : 0);
        ASSERT_LE(rel_fro(run_gemm(gemm, x, m, device_w, kernel), ref), kRefBound);
      }
    }
  }
}

// f16 activations (own magic number, dequantization constants and output rounding): every kernel, symmetric
// and asymmetric, 8-, 16- and 32-token skinny CTAs and the larger-M paths. Same bound as bf16 (f16 rounds
// more finely, so it is looser than needed).
TEST(GemmW4A16Cuda, F16ActivationsMatchTheReference) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  const int64_t n = 320, k = 512;
  W4A16Gemm gemm;
  for (const Int4Scheme& s :
       {mode(Granularity::Groupwise, 64, true), mode(Granularity::Groupwise, 128, false),
        mode(Granularity::Rowwise, 0, true)}) {
    const W4A16Weights packed = random_packed_weights(n, k, s, rng, DType::F16);
    const W4A16DeviceWeights device_w = W4A16DeviceWeights::upload(packed);
    for (int64_t m : {1, 5, 16, 33, 130}) {
      std::vector<uint16_t> x_bits(static_cast<size_t>(m * k));
      std::vector<float> x_values(x_bits.size());
      for (size_t i = 0; i < x_bits.size(); ++i) {
        x_bits[i] = float_to_half_bits(static_cast<float>(rng.normal()));
        x_values[i] = half_bits_to_float(x_bits[i]);
      }
      const auto x = to_device(std::span<const uint16_t>(x_bits), "X");
      for (W4A16Kernel kernel : kernels_here()) {
        SCOPED_TRACE(fmt::format("f16 {} M={} {}", s.describe(), m, w4a16_kernel_name(kernel)));
        std::vector<float> ref = gemm_w4a16_ref(x_values, m, packed, precision_of(kernel));
        for (auto& v : ref) v = half_bits_to_float(float_to_half_bits(v));  // the output's rounding
        ASSERT_LE(rel_fro(run_gemm(gemm, x, m, device_w, kernel), ref), kRefBound);
      }
    }
  }
}

// Split-K adds partial sums in a fixed order: the same inputs give the same bits.
TEST(GemmW4A16Cuda, DeterministicAcrossRuns) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  const int64_t n = 512, k = 2048;
  const auto device_w =
      W4A16DeviceWeights::upload(random_packed_weights(n, k, mode(Granularity::Groupwise, 128, true), rng));
  W4A16Gemm gemm;
  for (int64_t m : {1, 16, 128}) {
    DeviceBuffer<uint16_t> x(static_cast<size_t>(m * k), "X");
    bench::fill_normal_device(x.data(), DType::BF16, m * k, rng.next_u64(), 0.f, 1.f);
    for (W4A16Kernel kernel : kernels_here()) {
      gemm.tuning = {.splits = 3};  // exercise split-K explicitly (the dequant path has none: cuBLAS's own)
      ASSERT_EQ(gemm.plan(m, device_w.layout, kernel).splits, kernel == W4A16Kernel::Dequant ? 1 : 3);
      const auto a = run_gemm(gemm, x, m, device_w, kernel);
      const auto b = run_gemm(gemm, x, m, device_w, kernel);
      EXPECT_EQ(a, b) << "M=" << m << " " << w4a16_kernel_name(kernel);
    }
  }
}

TEST(GemmW4A16Cuda, BadInputIsReported) {
  QLLM_SKIP_WITHOUT_GPU();
  std::vector<float> w(128 * 256, 0.01f);
  const auto device_w = W4A16DeviceWeights::upload(
      repack_w4a16(quantize_int4_ref(w, 128, 256, mode(Granularity::Groupwise, 64, false)), DType::BF16));
  DeviceBuffer<uint16_t> x(4 * 256 + 8, "X"), y(4 * 128 + 8, "Y");
  W4A16Gemm gemm;
  gemm.reserve(device_w.layout, 4);
  EXPECT_NE(error_of([&] { gemm.run(x.data() + 1, device_w, y.data(), 4, nullptr); }).find("16-byte aligned"),
            std::string::npos);
  EXPECT_NE(error_of([&] { gemm.run(x.data(), device_w, y.data(), 0, nullptr); }).find("M = 0"),
            std::string::npos);
  EXPECT_NE(error_of([&] { gemm.run(x.data(), device_w, nullptr, 4, nullptr); }).find("non-null"),
            std::string::npos);
  if (!sm90a_kernels_available()) {
    EXPECT_NE(error_of([&] {
                gemm.run(x.data(), device_w, y.data(), 4, nullptr, W4A16Kernel::Wgmma);
              }).find("sm_90"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace qllm
