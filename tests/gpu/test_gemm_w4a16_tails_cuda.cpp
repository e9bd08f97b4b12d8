// W4A16 GEMM on shapes that are not whole tiles, every kernel against the CPU reference of its own weight
// precision (the bounds of test_gemm_w4a16_cuda.cpp): partial last scale groups (K = 576, 320, 192 with g128,
// as SmolLM2-135M and the `small` preset have), N and K not multiples of 64 (N = 272, 200, 201; K = 200, 136)
// and K not a multiple of 8 (100, 34: X goes through the zero-padded copy). Y is allocated with a guard after
// its M x N values that must keep its poison (a write past N or M shows), and X is followed by NaNs (a read
// past K of the last row would make that row NaN).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/gemm/w4a16.h"
#include "kernels/gemm/w4a16_launch.h"
#include "qllm/error.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::fresh_seed;

constexpr double kRefBound = 2e-3;
constexpr size_t kGuard = 4096;  // poisoned values after Y, NaNs after X

struct TailCase {
  int64_t n, k;
  Int4Scheme scheme;
};

Int4Scheme groupwise(int64_t g, bool zero_point) {
  return {.granularity = Granularity::Groupwise,
          .group_size = g,
          .zero_point = zero_point,
          .scale_dtype = DType::BF16,
          .search = ScaleSearch::Mse};
}

std::vector<TailCase> cases() {
  return {{64, 576, groupwise(128, false)},
          {576, 576, groupwise(128, true)},
          {192, 320, groupwise(128, false)},
          {320, 192, groupwise(128, true)},
          {272, 192, groupwise(64, true)},
          {272, 200, groupwise(128, false)},
          {200, 136, groupwise(32, false)},
          {201, 136, groupwise(16, true)},
          {8, 100, groupwise(32, true)},
          {48, 34, {.granularity = Granularity::Rowwise, .scale_dtype = DType::BF16}},
          {1000, 576, groupwise(128, true)},
          {96, 1000, groupwise(48, false)}};
}

std::vector<W4A16Kernel> kernels_here() {
  std::vector<W4A16Kernel> out = {W4A16Kernel::Skinny, W4A16Kernel::Tiled, W4A16Kernel::Dequant};
  if (sm90a_kernels_available()) out.push_back(W4A16Kernel::Wgmma);
  return out;
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

TEST(GemmW4A16Tails, EveryKernelMatchesTheReference) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  const int64_t ms[] = {1, 7, 16, 17, 33, 64, 100, 129, 256};
  for (const TailCase& c : cases()) {
    std::vector<float> w(static_cast<size_t>(c.n * c.k));
    for (auto& v : w) v = static_cast<float>(0.02 * rng.normal());
    const W4A16Weights packed = repack_w4a16(quantize_int4_ref(w, c.n, c.k, c.scheme), DType::BF16);
    const W4A16DeviceWeights device_w = W4A16DeviceWeights::upload(packed);
    const int64_t k_steps = packed.layout.padded_k() / 64;
    for (const int64_t m : ms) {
      std::vector<uint16_t> x_bits(static_cast<size_t>(m * c.k) + kGuard, 0x7fc0);  // NaN guard after X
      std::vector<float> x_values(static_cast<size_t>(m * c.k));
      for (size_t i = 0; i < x_values.size(); ++i) {
        x_bits[i] = float_to_bf16_bits(static_cast<float>(rng.normal()));
        x_values[i] = bf16_bits_to_float(x_bits[i]);
      }
      const auto x = to_device(std::span<const uint16_t>(x_bits), "X");
      std::vector<float> refs[2];
      refs[0] = gemm_w4a16_ref(x_values, m, packed, W4A16Precision::Exact);
      refs[1] = gemm_w4a16_ref(x_values, m, packed, W4A16Precision::RoundedWeights);
      for (auto& ref : refs) {
        for (auto& v : ref) v = bf16_bits_to_float(float_to_bf16_bits(v));
      }
      for (const W4A16Kernel kernel : kernels_here()) {
        for (const int splits : {0, 2}) {  // the plan's own, and forced split-K (partials, reductions)
          if (splits > k_steps || (splits && kernel == W4A16Kernel::Dequant)) continue;
          if (kernel == W4A16Kernel::Wgmma &&
              kernels::w4a16_wgmma_scale_groups(static_cast<int>(packed.layout.group_k / 16)) == 0)
            continue;  // groups of 48: not a wgmma configuration (the plan says so)
          SCOPED_TRACE(fmt::format("[{}, {}] {} M={} {} splits={}", c.n, c.k, c.scheme.describe(), m,
                                   w4a16_kernel_name(kernel), splits));
          W4A16Gemm gemm;
          gemm.tuning.splits = splits;
          gemm.reserve(device_w.layout, m, kernel);
          DeviceBuffer<uint16_t> y(static_cast<size_t>(m * c.n) + kGuard, "Y");
          y.fill_bytes(0xff);
          gemm.run(x.data(), device_w, y.data(), m, nullptr, kernel);
          QLLM_CUDA_CHECK(cudaDeviceSynchronize());
          const std::vector<uint16_t> bits = y.download();
          for (size_t i = static_cast<size_t>(m * c.n); i < bits.size(); ++i)
            ASSERT_EQ(bits[i], 0xffff) << "written past Y at " << i;
          std::vector<float> got(static_cast<size_t>(m * c.n));
          for (size_t i = 0; i < got.size(); ++i) got[i] = bf16_bits_to_float(bits[i]);
          const auto& ref = refs[kernel == W4A16Kernel::Skinny ? 0 : 1];
          ASSERT_LE(rel_fro(got, ref), kRefBound);
        }
      }
    }
  }
}

// The graph-safety contract holds on tails too: run() after reserve() allocates nothing, so a capture works.
TEST(GemmW4A16Tails, PaddedActivationsAreGraphCapturable) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  const int64_t n = 200, k = 100, m = 5;  // K % 8 != 0: the X copy runs inside the graph
  std::vector<float> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = static_cast<float>(0.02 * rng.normal());
  const W4A16Weights packed = repack_w4a16(quantize_int4_ref(w, n, k, groupwise(32, true)), DType::BF16);
  const W4A16DeviceWeights device_w = W4A16DeviceWeights::upload(packed);
  std::vector<uint16_t> x_bits(static_cast<size_t>(m * k));
  for (auto& b : x_bits) b = float_to_bf16_bits(static_cast<float>(rng.normal()));
  const auto x = to_device(std::span<const uint16_t>(x_bits), "X");
  DeviceBuffer<uint16_t> y(static_cast<size_t>(m * n), "Y");
  cudaStream_t stream = nullptr;
  QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  W4A16Gemm gemm;
  gemm.reserve(device_w.layout, m);
  gemm.run(x.data(), device_w, y.data(), m, stream);
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<uint16_t> eager = y.download();
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  QLLM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  gemm.run(x.data(), device_w, y.data(), m, stream);
  QLLM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  QLLM_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  y.fill_bytes(0xff);
  QLLM_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  EXPECT_EQ(y.download(), eager);
  QLLM_CUDA_CHECK(cudaGraphExecDestroy(exec));
  QLLM_CUDA_CHECK(cudaGraphDestroy(graph));
  QLLM_CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace
}  // namespace qllm
