// QuantLinear on the GPU: every QuantMode against the CPU reference linear (model/cpu_linear.h, the spec:
// the same mode gives the same dequantized weights) on the engine's shapes and on shapes that are not whole
// kernel tiles (partial last INT4 groups: K = 576, 320, 192 with g128; N and K not multiples of 64 or of 8,
// which the layers pad inside), an odd K refused for INT4 with a message naming it, and a CUDA graph
// captured once and replayed with new inputs (int8 with outlier columns that move between replays) equal
// to eager runs bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/gemm/quant_linear.h"
#include "model/cpu_linear.h"
#include "qllm/half.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;
using testing::fresh_seed;

struct Shape {
  int64_t n, k;
};
// SmolLM2-135M (K = 576: g128 leaves a partial last group), Llama-3.2-1B, the `small` preset (hidden 192,
// intermediate 320, vocab 272) and odd shapes: N and K not multiples of 64 (200, 136, 328), of 8 (100, 34),
// an odd N (201).
constexpr Shape kShapes[] = {{960, 576},   {576, 576}, {3072, 576}, {576, 1536}, {49152, 576}, {3072, 2048},
                             {2048, 8192}, {200, 328}, {576, 192},  {192, 320},  {272, 192},   {640, 192},
                             {200, 136},   {201, 136}, {192, 100},  {64, 34}};
constexpr int64_t kTokens[] = {1, 7, 64, 300};
const char* const kModes[] = {"bf16",     "f16",       "int4-global",    "int4-rowwise",
                              "int4-g64", "int4-g128", "int4-g128-asym", "int8"};

int64_t round_up_64(int64_t v) {
  return (v + 63) / 64 * 64;
}

uint16_t to_16(float v, DType dtype) {
  return dtype == DType::BF16 ? float_to_bf16_bits(v) : float_to_half_bits(v);
}
float from_16(uint16_t v, DType dtype) {
  return dtype == DType::BF16 ? bf16_bits_to_float(v) : half_bits_to_float(v);
}

// Activations [m, k] in the 16-bit dtype, normal with two outlier columns (|x| = 8 > 6, LLM.int8()'s
// threshold) at `outlier_col` and k - 1 - outlier_col.
std::vector<uint16_t> activations(int64_t m, int64_t k, DType dtype, Rng& rng, int64_t outlier_col) {
  std::vector<float> v(static_cast<size_t>(m * k));
  fill_normal(std::span<float>(v), rng);
  std::vector<uint16_t> out(v.size());
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t c = 0; c < k; ++c) {
      float x = v[static_cast<size_t>(t * k + c)];
      if (c == outlier_col || c == k - 1 - outlier_col) x = (t % 2 ? -8.0f : 8.0f);
      out[static_cast<size_t>(t * k + c)] = to_16(x, dtype);
    }
  }
  return out;
}

double rel_fro(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

TEST(QuantLinear, EveryModeMatchesTheCpuReference) {
  QLLM_SKIP_WITHOUT_GPU();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  Rng rng(seed);
  GemmExecutor executor;
  for (const Shape s : kShapes) {
    std::vector<float> w(static_cast<size_t>(s.n * s.k));
    fill_normal(std::span<float>(w), rng, 0.0, 0.05);
    const WeightMatrix source{"w", DType::F32, w.data(), s.n, s.k};
    for (const char* name : kModes) {
      const QuantMode mode = QuantMode::parse(name);
      const DType activation = mode.is_dense() ? mode.dense_dtype : DType::BF16;
      SCOPED_TRACE(fmt::format("[{}, {}] {}", s.n, s.k, name));
      const HostWeight host{w.data(), DType::F32, s.n, s.k};
      QuantLinear layer(host, mode, activation, nullptr);
      EXPECT_EQ(layer.out_features(), s.n);
      EXPECT_EQ(layer.in_features(), s.k);
      // Stored shapes: int4 and int8 pad N and K to multiples of 64 (whole tiles), dense stores them as is.
      const int64_t np = round_up_64(s.n), kp = round_up_64(s.k);
      if (mode.kind == QuantMode::Kind::Int4) {  // scales per row group in 16 bits, zero points too
        EXPECT_GE(layer.weight_bytes(), static_cast<uint64_t>(np * kp / 2));
        EXPECT_LE(layer.weight_bytes(), static_cast<uint64_t>(np * kp * 2 * 3 / 10));  // <= 30% of bf16
      } else if (mode.kind == QuantMode::Kind::Int8) {
        EXPECT_EQ(layer.weight_bytes(), mode.stored_bytes(np, kp));
      } else {
        EXPECT_EQ(layer.weight_bytes(), mode.stored_bytes(s.n, s.k));
      }
      const CpuLinear reference(source, mode, activation);
      // The CPU reference of the largest products is slow: decode sizes only there.
      const int64_t max_m = s.n * s.k > 20'000'000 ? 7 : 300;
      layer.reserve(executor, max_m);
      for (const int64_t m : kTokens) {
        if (m > max_m) continue;
        SCOPED_TRACE(fmt::format("M={}", m));
        const std::vector<uint16_t> x = activations(m, s.k, activation, rng, s.k / 3);
        std::vector<float> x_values(x.size());
        for (size_t i = 0; i < x.size(); ++i) x_values[i] = from_16(x[i], activation);
        std::vector<float> ref(static_cast<size_t>(m * s.n));
        reference.forward(ref.data(), x_values.data(), m);

        // X followed by NaNs (a read past K of the last row shows), Y by a poisoned guard (a write past
        // [m, N] shows).
        constexpr size_t kGuard = 1024;
        std::vector<uint16_t> x_guarded = x;
        x_guarded.resize(x.size() + kGuard, 0xffff);
        const auto x_device = to_device(std::span<const uint16_t>(x_guarded), "X");
        DeviceBuffer<uint16_t> y(static_cast<size_t>(m * s.n) + kGuard, "Y");
        y.fill_bytes(0xff);  // poison: NaN
        layer.forward(executor, x_device.data(), y.data(), m, nullptr);
        QLLM_CUDA_CHECK(cudaStreamSynchronize(nullptr));
        const std::vector<uint16_t> y_bits = y.download();
        for (size_t i = static_cast<size_t>(m * s.n); i < y_bits.size(); ++i)
          ASSERT_EQ(y_bits[i], 0xffff) << "written past Y at " << i;
        std::vector<float> got(static_cast<size_t>(m * s.n));
        for (size_t i = 0; i < got.size(); ++i) {
          got[i] = from_16(y_bits[i], activation);
          ASSERT_TRUE(std::isfinite(got[i])) << "output " << i << " not written";
        }
        EXPECT_LE(rel_fro(got, ref), 8e-3);
      }
    }
  }
}

TEST(QuantLinear, GraphReplayEqualsEagerRuns) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  cudaStream_t stream = nullptr;
  QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  GemmExecutor executor;
  // A whole-tile shape, and one whose padding copies (int8: X and Y; int4: X, K % 8 != 0) run in the graph.
  for (const Shape s : {Shape{960, 576}, Shape{272, 100}}) {
    std::vector<float> w(static_cast<size_t>(s.n * s.k));
    fill_normal(std::span<float>(w), rng, 0.0, 0.05);
    for (const char* name : {"bf16", "int4-g64", "int4-g64-asym", "int8"}) {
      for (const int64_t m : {int64_t{1}, int64_t{7}, int64_t{64}, int64_t{300}}) {
        SCOPED_TRACE(fmt::format("[{}, {}] {} M={}", s.n, s.k, name, m));
        QuantLinear layer({w.data(), DType::F32, s.n, s.k}, QuantMode::parse(name), DType::BF16, stream);
        layer.reserve(executor, m);
        DeviceBuffer<uint16_t> x(static_cast<size_t>(m * s.k), "X"), y(static_cast<size_t>(m * s.n), "Y");
        auto load_x = [&](int64_t outlier_col) {
          const auto bits = activations(m, s.k, DType::BF16, rng, outlier_col);
          QLLM_CUDA_CHECK(
              cudaMemcpyAsync(x.data(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice, stream));
          QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
        };
        load_x(5);
        layer.forward(executor, x.data(), y.data(), m, stream);  // eager first (cuBLASLt plans, tensor maps)
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        QLLM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
        layer.forward(executor, x.data(), y.data(), m, stream);
        QLLM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
        QLLM_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
        // New inputs each replay, with the outlier columns moving (a stale outlier bitmap would show).
        for (int64_t replay = 0; replay < 3; ++replay) {
          load_x(17 + 40 * replay);
          y.fill_bytes(0xff);
          QLLM_CUDA_CHECK(cudaGraphLaunch(exec, stream));
          QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
          const std::vector<uint16_t> replayed = y.download();
          y.fill_bytes(0xff);
          layer.forward(executor, x.data(), y.data(), m, stream);
          QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
          ASSERT_EQ(replayed, y.download()) << "replay " << replay;
        }
        QLLM_CUDA_CHECK(cudaGraphExecDestroy(exec));
        QLLM_CUDA_CHECK(cudaGraphDestroy(graph));
      }
    }
  }
  executor.int8.fetch_status(stream);
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  EXPECT_EQ(executor.int8.check(), 2);  // the two outlier columns, no NaN
  QLLM_CUDA_CHECK(cudaStreamDestroy(stream));
}

// INT4 needs an even K (two weights per byte): refused at construction with the shape, never padded
// silently; dense and int8 layers take an odd K.
TEST(QuantLinear, OddKIsRefusedForInt4Only) {
  QLLM_SKIP_WITHOUT_GPU();
  std::vector<float> w(64 * 101, 0.01f);
  GemmExecutor executor;
  const HostWeight host{w.data(), DType::F32, 64, 101};
  const std::string message = error_of(
      [&] { (void)QuantLinear(host, QuantMode::parse("int4-g32"), DType::BF16, nullptr); });
  EXPECT_NE(message.find("[64, 101]"), std::string::npos) << message;
  EXPECT_NE(message.find("even K"), std::string::npos) << message;
  for (const char* name : {"bf16", "int8"}) {
    QuantLinear layer(host, QuantMode::parse(name), DType::BF16, nullptr);
    layer.reserve(executor, 3);
    const auto x = to_device(std::span<const uint16_t>(std::vector<uint16_t>(3 * 101, 0x3f80)), "X");  // 1.0
    DeviceBuffer<uint16_t> y(3 * 64, "Y");
    y.fill_bytes(0xff);
    layer.forward(executor, x.data(), y.data(), 3, nullptr);
    QLLM_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    for (const uint16_t v : y.download()) {  // 101 * 0.01 (bf16 weights, int8 rows: within 1%)
      ASSERT_NEAR(bf16_bits_to_float(v), 1.01f, 0.02f) << name;
    }
  }
}

TEST(QuantLinear, ForwardNeedsReserve) {
  QLLM_SKIP_WITHOUT_GPU();
  std::vector<float> w(128 * 64, 0.01f);
  GemmExecutor executor;
  QuantLinear layer({w.data(), DType::F32, 128, 64}, QuantMode::parse("int4-g64"), DType::BF16, nullptr);
  EXPECT_EQ(layer.weight_bytes(), QuantMode::parse("int4-g64").stored_bytes(128, 64));
  DeviceBuffer<uint16_t> x(64 * 4, "X"), y(128 * 4, "Y");
  EXPECT_NE(error_of([&] { layer.forward(executor, x.data(), y.data(), 4, nullptr); }).find("reserve()"),
            std::string::npos);
  layer.reserve(executor, 2);
  EXPECT_NE(error_of([&] { layer.forward(executor, x.data(), y.data(), 4, nullptr); }).find("reserved for at most 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              (void)QuantLinear(HostWeight{w.data(), DType::F32, 128, 64}, QuantMode::parse("bf16"),
                                DType::F16, nullptr);
            }).find("must match"),
            std::string::npos);
}

}  // namespace
}  // namespace qllm
