// LLM.int8() on the GPU against the CPU reference (include/qllm/int8.h): weight quantization bit for bit, the
// decomposed GEMM on fresh random inputs over a sweep of M and shapes, both kernels, outliers on and off.
//
// Bound: relative Frobenius error 2e-3 against the reference rounded to bf16 like the output. The int32
// accumulation is exact; what differs is the fp32 scaling and outlier sums (~1e-7 relative), which flips a
// bf16 output by one ulp only on near-ties.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "bench/bench_kernels.h"
#include "kernels/gemm/cublas_gemm.h"
#include "kernels/gemm/int8.h"
#include "kernels/gemm/int8_launch.h"
#include "qllm/error.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;
using testing::fresh_seed;

constexpr double kBound = 2e-3;

std::vector<Int8Kernel> kernels_here() {
  std::vector<Int8Kernel> out = {Int8Kernel::Skinny};
  if (sm90a_kernels_available()) out.push_back(Int8Kernel::Wide);
  return out;
}

std::vector<float> bf16_values(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_bits_to_float(v[i]);
  return out;
}

float round_bf16(double v) {
  return bf16_bits_to_float(float_to_bf16_bits(static_cast<float>(v)));
}

double rel_fro(const std::vector<float>& got, const std::vector<float>& ref) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff += (static_cast<double>(got[i]) - ref[i]) * (static_cast<double>(got[i]) - ref[i]);
    norm += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(diff / norm);  // NaN never passes
}

// Elements of `got` (bf16 outputs) off the exact reference by more than their own bf16 rounding allows:
// 2^-8 of |ref| (twice the half-ulp) plus 1e-4 of the output's largest magnitude for float summation-order
// noise near zero. Catches a wrong element or column that a whole-output norm would average away; NaN counts.
int64_t elements_off(const std::vector<float>& got, const std::vector<double>& ref) {
  double largest = 0;
  for (double r : ref) largest = std::max(largest, std::fabs(r));
  int64_t off = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double bound = std::ldexp(std::fabs(ref[i]), -8) + 1e-4 * largest;
    if (!(std::fabs(static_cast<double>(got[i]) - ref[i]) <= bound)) ++off;
  }
  return off;
}

// Random bf16 activations with `outlier_columns` planted, distinct columns whose every value has magnitude
// 10 to 40 (above the 6.0 threshold), either sign.
std::vector<uint16_t> activations(int64_t m, int64_t k, int outlier_columns, Rng& rng) {
  std::vector<uint16_t> x(static_cast<size_t>(m * k));
  // N(0, 1) cut at |x| < 5: else a natural |x| >= 6 turns up about once in 5e8 values (in bf16, from 5.98),
  // i.e. in ~7% of the runs of the Llama-shape test, as an unplanned outlier column.
  for (auto& v : x) {
    double value = rng.normal();
    while (std::fabs(value) >= 5.0) value = rng.normal();
    v = float_to_bf16_bits(static_cast<float>(value));
  }
  std::vector<int64_t> planted;
  while (static_cast<int>(planted.size()) < outlier_columns) {
    const int64_t col = static_cast<int64_t>(rng.below(static_cast<uint64_t>(k)));
    if (std::find(planted.begin(), planted.end(), col) != planted.end()) continue;
    planted.push_back(col);
    for (int64_t r = 0; r < m; ++r) {
      const double magnitude = 10.0 + 30.0 * rng.uniform();
      x[r * k + col] = float_to_bf16_bits(static_cast<float>(rng.uniform() < 0.5 ? -magnitude : magnitude));
    }
  }
  return x;
}

// The status of the runs since the last clear, fetched and waited for.
int64_t checked(Int8Gemm& gemm) {
  gemm.fetch_status(nullptr);
  QLLM_CUDA_CHECK(cudaStreamSynchronize(nullptr));
  return gemm.check();
}

std::vector<float> run_gemm(Int8Gemm& gemm, const std::vector<uint16_t>& x_bits, int64_t m,
                            const Int8DeviceWeights& w, Int8Kernel kernel, int64_t* outliers = nullptr) {
  const auto x = to_device(std::span<const uint16_t>(x_bits), "X");
  DeviceBuffer<uint16_t> y(static_cast<size_t>(m * w.n), "Y");
  y.fill_bytes(0xff);  // poison: NaN
  gemm.reserve(w.n, w.k, m, kernel);
  gemm.clear_status(nullptr);
  gemm.run(x.data(), w, y.data(), m, DType::BF16, nullptr, kernel);
  const int64_t count = checked(gemm);
  if (outliers) *outliers = count;
  return bf16_values(y.download());
}

// Fresh activations with `planted` outlier columns through every kernel here: the whole output within bf16
// rounding of the CPU reference (norm and per element), and the outlier column count reported.
void expect_matches_reference(Int8Gemm& gemm, const Int8Rows& wq, const Int8DeviceWeights& w, int64_t m,
                              int planted, Rng& rng) {
  const auto x = activations(m, w.k, planted, rng);
  Int8GemmStats stats;
  const auto ref = gemm_int8_ref(bf16_values(x), m, wq, kDefaultOutlierThreshold, &stats);
  std::vector<float> ref_rounded(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) ref_rounded[i] = round_bf16(ref[i]);
  for (Int8Kernel kernel : kernels_here()) {
    SCOPED_TRACE(fmt::format("[{}, {}] M={} outliers={} {}", w.n, w.k, m, planted, int8_kernel_name(kernel)));
    int64_t outliers = -1;
    const auto got = run_gemm(gemm, x, m, w, kernel, &outliers);
    ASSERT_LE(rel_fro(got, ref_rounded), kBound);
    ASSERT_EQ(elements_off(got, ref), 0);
    ASSERT_EQ(outliers, stats.outlier_columns);
  }
}

TEST(Int8Cuda, WeightQuantizationIsBitIdentical) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{
           {64, 64}, {192, 448}, {512, 2048}, {64, 8192}, {64, 16448}}) {  // the last: rows read twice
    std::vector<uint16_t> w(static_cast<size_t>(n * k));
    for (auto& v : w) v = float_to_bf16_bits(static_cast<float>(0.02 * rng.normal()));
    for (int64_t c = 0; c < k; ++c) w[static_cast<size_t>(3 * k + c)] = 0;  // an all-zero row
    const auto device = to_device(std::span<const uint16_t>(w), "W");
    const Int8Rows gpu = quantize_int8_weights_cuda(device.data(), DType::BF16, n, k, nullptr).download();
    const Int8Rows ref = quantize_int8_rows_ref(bf16_values(w), n, k);
    EXPECT_EQ(gpu.values, ref.values) << "[" << n << ", " << k << "]";
    EXPECT_EQ(gpu.absmax, ref.absmax) << "[" << n << ", " << k << "]";
  }
}

// Full reference on small and odd-but-valid shapes, every M, both kernels, with and without outliers.
TEST(Int8Cuda, GemmMatchesTheReference) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  Int8Gemm gemm;
  const std::vector<int64_t> ms = {1, 2, 3, 5, 8, 15, 16, 17, 31, 33, 64, 100, 128, 129, 256};
  for (auto [n, k] :
       std::vector<std::pair<int64_t, int64_t>>{{64, 64}, {320, 448}, {192, 1024}, {512, 2048}}) {
    std::vector<float> wf(static_cast<size_t>(n * k));
    for (auto& v : wf) v = static_cast<float>(0.02 * rng.normal());
    const Int8Rows wq = quantize_int8_rows_ref(wf, n, k);
    const Int8DeviceWeights w = Int8DeviceWeights::upload(wq);
    for (int64_t m : ms)
      for (int planted : {0, 3})
        ASSERT_NO_FATAL_FAILURE(expect_matches_reference(gemm, wq, w, m, planted, rng));
  }
}

// Rows longer than the prep holds in registers (K > 16384: read twice), and more outlier columns than the
// wide kernel stages in shared memory (> 16: its epilogue reads them from global memory).
TEST(Int8Cuda, LongRowsAndManyOutliers) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  Int8Gemm gemm;
  for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{{128, 16448}, {320, 960}}) {
    std::vector<float> wf(static_cast<size_t>(n * k));
    for (auto& v : wf) v = static_cast<float>(0.02 * rng.normal());
    const Int8Rows wq = quantize_int8_rows_ref(wf, n, k);
    const Int8DeviceWeights w = Int8DeviceWeights::upload(wq);
    for (int64_t m : {3, 33, 130})
      for (int planted : {3, 20})
        ASSERT_NO_FATAL_FAILURE(expect_matches_reference(gemm, wq, w, m, planted, rng));
  }
}

// Most or all of the columns outliers, as in a real model's down projection (SmolLM2-135M at threshold 6: over
// 1400 of its 1536 input columns): every count up to K is computed, by the skinny kernel's 16- and 8-token
// CTAs and by the wide kernel.
TEST(Int8Cuda, MostColumnsOutliers) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  Int8Gemm gemm;
  const int64_t n = 192, k = 1536;
  std::vector<float> wf(static_cast<size_t>(n * k));
  for (auto& v : wf) v = static_cast<float>(0.02 * rng.normal());
  const Int8Rows wq = quantize_int8_rows_ref(wf, n, k);
  const Int8DeviceWeights w = Int8DeviceWeights::upload(wq);
  for (int64_t m : {1, 5, 40, 300})
    for (int planted : {1100, 1536})
      ASSERT_NO_FATAL_FAILURE(expect_matches_reference(gemm, wq, w, m, planted, rng));
  gemm.tuning = {.tokens_per_cta = 8};
  for (int planted : {1100, 1536})
    ASSERT_NO_FATAL_FAILURE(expect_matches_reference(gemm, wq, w, 3, planted, rng));
}

// Every configuration (token tile, K split across warps / CTAs, wide block) on one odd shape.
TEST(Int8Cuda, EveryConfigurationMatchesTheReference) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  const int64_t n = 320, k = 960;
  std::vector<float> wf(static_cast<size_t>(n * k));
  for (auto& v : wf) v = static_cast<float>(0.02 * rng.normal());
  const Int8Rows wq = quantize_int8_rows_ref(wf, n, k);
  const Int8DeviceWeights w = Int8DeviceWeights::upload(wq);
  Int8Gemm gemm;
  for (int64_t m : {1, 9, 17, 33, 130}) {
    const auto x = activations(m, k, 2, rng);
    const auto ref = gemm_int8_ref(bf16_values(x), m, wq, kDefaultOutlierThreshold);
    std::vector<float> ref_rounded(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) ref_rounded[i] = round_bf16(ref[i]);
    for (int tok : {8, 16, 32}) {
      for (int wk : {1, 2, 4, 8}) {
        for (int splits : {1, 2, 3}) {
          SCOPED_TRACE(fmt::format("skinny M={} tokens {} warps_k {} splits {}", m, tok, wk, splits));
          gemm.tuning = {.tokens_per_cta = tok, .warps_k = wk, .splits = splits};
          ASSERT_LE(rel_fro(run_gemm(gemm, x, m, w, Int8Kernel::Skinny), ref_rounded), kBound);
        }
      }
    }
    if (!sm90a_kernels_available()) continue;
    // Each block size with the CTAs per SM it supports; the splits form a cluster (up to 8, all 8 k blocks).
    for (auto [block_n, ctas] : std::vector<std::pair<int, int>>{{256, 1}, {128, 1}, {128, 2}, {64, 2}}) {
      for (int splits : {1, 2, 3, 8}) {
        SCOPED_TRACE(fmt::format("wide M={} block_n {} ctas/SM {} splits {}", m, block_n, ctas, splits));
        gemm.tuning = {.block_n = block_n, .ctas_per_sm = ctas, .splits = splits};
        ASSERT_LE(rel_fro(run_gemm(gemm, x, m, w, Int8Kernel::Wide), ref_rounded), kBound);
      }
    }
  }
}

// The Llama shapes: the whole output against a per-element CPU reference on 256 sampled entries, and the
// point of the decomposition: with planted outlier columns, closer to the bf16 product (cuBLAS on the bf16
// weights) than without it.
TEST(Int8Cuda, LlamaShapesAndTheOutlierDecomposition) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  CublasGemm cublas;
  for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{
           {128256, 2048}, {2048, 2048}, {512, 2048}, {8192, 2048}, {2048, 8192}}) {
    DeviceBuffer<uint16_t> wb(static_cast<size_t>(n * k), "W bf16");
    bench::fill_normal_device(wb.data(), DType::BF16, n * k, rng.next_u64(), 0.f, 0.02f);
    const Int8DeviceWeights w = quantize_int8_weights_cuda(wb.data(), DType::BF16, n, k, nullptr);
    const Int8Rows wq = w.download();
    for (int64_t m : {1, 16, 128, 512, 2048}) {
      const auto x_bits = activations(m, k, 2, rng);
      const auto x = to_device(std::span<const uint16_t>(x_bits), "X");
      const std::vector<float> xf = bf16_values(x_bits);
      DeviceBuffer<uint16_t> y_bf16(static_cast<size_t>(m * n), "Y bf16");
      cublas.run(x.data(), wb.data(), y_bf16.data(), m, n, k, DType::BF16, nullptr);
      // Per-element reference for sampled entries (the full one would be m * n * k on the CPU).
      const std::vector<uint8_t> flags = outlier_columns_ref(xf, m, k, kDefaultOutlierThreshold);
      const Int8Rows xq = quantize_int8_rows_ref(xf, m, k, flags);
      for (Int8Kernel kernel : kernels_here()) {
        SCOPED_TRACE(fmt::format("[{}, {}] M={} {}", n, k, m, int8_kernel_name(kernel)));
        Int8Gemm gemm;
        DeviceBuffer<uint16_t> y(static_cast<size_t>(m * n), "Y");
        y.fill_bytes(0xff);
        gemm.reserve(n, k, m, kernel);
        gemm.run(x.data(), w, y.data(), m, DType::BF16, nullptr, kernel);
        ASSERT_EQ(checked(gemm), 2);
        const auto got = bf16_values(y.download());
        std::vector<float> sampled_got, sampled_ref;
        for (int i = 0; i < 256; ++i) {
          const int64_t r = static_cast<int64_t>(rng.below(static_cast<uint64_t>(m)));
          const int64_t c = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n)));
          int64_t acc = 0;
          double outlier = 0;
          for (int64_t j = 0; j < k; ++j) {
            acc += static_cast<int64_t>(xq.values[r * k + j]) * wq.values[c * k + j];
            if (flags[j])
              outlier += static_cast<double>(xf[r * k + j]) * wq.values[c * k + j] * wq.absmax[c] / 127.0;
          }
          sampled_got.push_back(got[static_cast<size_t>(r * n + c)]);
          sampled_ref.push_back(
              round_bf16(static_cast<double>(acc) * xq.absmax[r] * wq.absmax[c] / 16129.0 + outlier));
        }
        ASSERT_LE(rel_fro(sampled_got, sampled_ref), kBound);

        const double with = bench::diff_stats_device(y.data(), y_bf16.data(), DType::BF16, m * n).rel_fro();
        gemm.threshold = std::numeric_limits<float>::infinity();
        gemm.clear_status(nullptr);
        gemm.run(x.data(), w, y.data(), m, DType::BF16, nullptr, kernel);
        ASSERT_EQ(checked(gemm), 0);
        const double without =
            bench::diff_stats_device(y.data(), y_bf16.data(), DType::BF16, m * n).rel_fro();
        EXPECT_LT(with, 0.02);
        EXPECT_GT(without, 2.0 * with) << "with " << with << " without " << without;
      }
    }
  }
}

TEST(Int8Cuda, BadInputIsReported) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(1);
  std::vector<float> wf(128 * 256, 0.01f);
  const Int8DeviceWeights w = Int8DeviceWeights::upload(quantize_int8_rows_ref(wf, 128, 256));
  auto x_bits = activations(4, 256, 0, rng);
  x_bits[2 * 256 + 7] = float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN());
  const auto x = to_device(std::span<const uint16_t>(x_bits), "X");
  DeviceBuffer<uint16_t> y(4 * 128 + 8, "Y");
  Int8Gemm gemm;
  gemm.reserve(128, 256, 4);
  gemm.run(x.data(), w, y.data(), 4, DType::BF16, nullptr);
  EXPECT_NE(error_of([&] { checked(gemm); }).find("row 2, column 7"), std::string::npos);
  EXPECT_NE(error_of([&] { gemm.run(x.data(), w, y.data(), 5, DType::BF16, nullptr); }).find("reserve()"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { gemm.run(x.data() + 1, w, y.data(), 4, DType::BF16, nullptr); }).find("16-byte aligned"),
      std::string::npos);
  EXPECT_NE(error_of([&] { gemm.run(x.data(), w, y.data(), 4, DType::F32, nullptr); }).find("bf16 or f16"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              Int8DeviceWeights::upload(quantize_int8_rows_ref(std::vector<float>(96 * 64, 1.f), 96, 64));
            }).find("divisible by 64"),
            std::string::npos);
  std::vector<uint16_t> bad_w(64 * 64, float_to_bf16_bits(0.5f));
  bad_w[5 * 64 + 9] = float_to_bf16_bits(std::numeric_limits<float>::infinity());
  const auto bad = to_device(std::span<const uint16_t>(bad_w), "W");
  EXPECT_NE(error_of([&] {
              quantize_int8_weights_cuda(bad.data(), DType::BF16, 64, 64, nullptr);
            }).find("row 5, column 9"),
            std::string::npos);
}

}  // namespace
}  // namespace qllm
