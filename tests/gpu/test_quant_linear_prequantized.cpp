// Pre-quantized INT4 on the GPU (QuantLinear(Int4Matrix), model/prequantized.h): a matrix quantized ahead of
// time by the CPU reference and uploaded as it is gives the same device bytes and the same outputs, bit for
// bit, as quantizing the source at load on the GPU; its products match the CPU reference; what the kernels
// cannot run is refused with a message naming it; and the GPU engine on a pre-quantized model (bf16 scales as
// `qllm quantize --format qllm` writes, f16 scales as GPTQ/AWQ checkpoints carry) equals quantizing at load
// bit for bit and the CPU reference within the engine's bounds.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include "engine/quantize_model.h"
#include "kernels/gemm/quant_linear.h"
#include "model/cpu_linear.h"
#include "model/llama_cuda.h"
#include "model/llama_ref.h"
#include "model/prequantized.h"
#include "model/synthetic.h"
#include "qllm/half.h"
#include "tests/cpu/model_test_support.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;
using testing::fresh_seed;
using testing::all_logits;
using testing::relative_diff;

struct Shape {
  int64_t n, k;
};
// Whole tiles (SmolLM2's q/k/v fused: 960 x 576 with a partial g128 group) and N, K not multiples of 64 or 8.
constexpr Shape kShapes[] = {{960, 576}, {272, 192}, {200, 136}, {201, 100}};
const char* const kModes[] = {"int4-global", "int4-rowwise", "int4-g64", "int4-g128-asym", "int4-g32-asym"};

float from_16(uint16_t v, DType dtype) {
  return dtype == DType::BF16 ? bf16_bits_to_float(v) : half_bits_to_float(v);
}

std::vector<uint16_t> random_activations(int64_t m, int64_t k, DType dtype, Rng& rng) {
  std::vector<float> v(static_cast<size_t>(m * k));
  fill_normal(std::span<float>(v), rng);
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = dtype == DType::BF16 ? float_to_bf16_bits(v[i]) : float_to_half_bits(v[i]);
  return out;
}

std::vector<uint16_t> run(const QuantLinear& layer, GemmExecutor& executor, const std::vector<uint16_t>& x,
                          int64_t m) {
  layer.reserve(executor, m);
  const auto x_device = to_device(std::span<const uint16_t>(x), "X");
  DeviceBuffer<uint16_t> y(static_cast<size_t>(m * layer.out_features()), "Y");
  y.fill_bytes(0xff);
  layer.forward(executor, x_device.data(), y.data(), m, nullptr);
  QLLM_CUDA_CHECK(cudaStreamSynchronize(nullptr));
  return y.download();
}

TEST(QuantLinearPrequantized, SameBytesAndOutputsAsQuantizingAtLoad) {
  QLLM_SKIP_WITHOUT_GPU();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  Rng rng(seed);
  GemmExecutor executor;
  for (const Shape s : kShapes) {
    std::vector<float> w(static_cast<size_t>(s.n * s.k));
    fill_normal(std::span<float>(w), rng, 0.0, 0.05);
    const WeightMatrix source{"w", DType::F32, w.data(), s.n, s.k};
    for (const DType activation : {DType::BF16, DType::F16}) {
      for (const char* name : kModes) {
        SCOPED_TRACE(fmt::format("[{}, {}] {} {}", s.n, s.k, name, dtype_name(activation)));
        const QuantMode mode = QuantMode::parse(name);
        WeightMatrix pre = source;
        pre.int4 = std::make_shared<const Int4Matrix>(quantize_weight_int4(source, mode.int4, activation));
        pre.data = nullptr;
        const QuantLinear stored(*pre.int4, activation);
        const QuantLinear at_load({w.data(), DType::F32, s.n, s.k}, mode, activation, nullptr);
        EXPECT_EQ(stored.mode().name(), mode.name());
        ASSERT_NE(stored.int4(), nullptr);
        EXPECT_EQ(stored.int4()->qweight.download(), at_load.int4()->qweight.download());
        EXPECT_EQ(stored.int4()->scales.download(), at_load.int4()->scales.download());
        EXPECT_EQ(stored.int4()->zero_offsets.download(), at_load.int4()->zero_offsets.download());
        EXPECT_EQ(stored.weight_bytes(), at_load.weight_bytes());

        const CpuLinear reference(pre, mode, activation);  // kept as stored: the exact reconstruction
        for (const int64_t m : {int64_t{1}, int64_t{37}}) {
          const std::vector<uint16_t> x = random_activations(m, s.k, activation, rng);
          const std::vector<uint16_t> y = run(stored, executor, x, m);
          EXPECT_EQ(y, run(at_load, executor, x, m)) << "M=" << m;
          std::vector<float> x_values(x.size()), ref(static_cast<size_t>(m * s.n)), got(y.size());
          for (size_t i = 0; i < x.size(); ++i) x_values[i] = from_16(x[i], activation);
          reference.forward(ref.data(), x_values.data(), m);
          for (size_t i = 0; i < y.size(); ++i) got[i] = from_16(y[i], activation);
          EXPECT_LE(relative_diff(got, ref), 8e-3) << "M=" << m;
        }
      }
    }
  }
}

TEST(QuantLinearPrequantized, RefusesWhatTheKernelsCannotRun) {
  QLLM_SKIP_WITHOUT_GPU();
  std::vector<float> w(64 * 128, 0.01f);
  const WeightMatrix source{"w", DType::F32, w.data(), 64, 128};
  const Int4Matrix f16_scales = quantize_weight_int4(source, QuantMode::parse("int4-g64").int4, DType::F16);
  std::string e = error_of([&] { (void)QuantLinear(f16_scales, DType::BF16); });
  EXPECT_NE(e.find("f16 scales but the activations are bf16"), std::string::npos) << e;

  // Min offset (GGUF Q4_1) runs (tests/gpu/test_gemm_w4a16_min_cuda.cpp), with its scales' dtype only.
  Int4Matrix min_offset = f16_scales;
  min_offset.scheme.min_offset = true;
  min_offset.mins.assign(min_offset.scales.size(), 0);
  EXPECT_NO_THROW((void)QuantLinear(min_offset, DType::F16));
  e = error_of([&] { (void)QuantLinear(min_offset, DType::BF16); });
  EXPECT_NE(e.find("f16 scales but the activations are bf16"), std::string::npos) << e;

  Int4Scheme g24;
  g24.group_size = 24;  // QuantMode::parse refuses it; a checkpoint may carry it
  const Int4Matrix g24_matrix = quantize_weight_int4(source, g24, DType::BF16);
  e = error_of([&] { (void)QuantLinear(g24_matrix, DType::BF16); });
  EXPECT_NE(e.find("16"), std::string::npos) << e;

  Int4Matrix short_packed = f16_scales;
  short_packed.packed.pop_back();
  e = error_of([&] { (void)QuantLinear(short_packed, DType::F16); });
  EXPECT_NE(e.find("packed bytes"), std::string::npos) << e;
}

// The engine fuses q/k/v and gate/up: the stored parts are concatenated by rows (GLOBAL parts keep their
// own scales), which must equal the fused quantization at load.
TEST(LlamaCudaPrequantized, EqualsQuantizingAtLoadAndTheCpuReference) {
  QLLM_SKIP_WITHOUT_GPU();
  testing::TempDir dir;
  write_synthetic_checkpoint({.preset = "small", .out_dir = dir.str(), .seed = 23});
  const LlamaConfig config = LlamaConfig::load(dir.str());
  Rng rng(9);
  std::vector<int32_t> tokens(33);
  for (auto& t : tokens) t = static_cast<int32_t>(rng.below(272));
  for (const char* name : {"int4-g32", "int4-global", "int4-g64-asym"}) {
    for (const DType activation : {DType::BF16, DType::F16}) {
      SCOPED_TRACE(fmt::format("{} {}", name, dtype_name(activation)));
      ModelQuant quant = ModelQuant::parse(name, "bf16");
      quant.activation = activation;
      quant.lm_head = QuantMode::parse(dtype_name(activation));
      LlamaWeights pre = LlamaWeights::load(dir.str(), config);
      for (const LlamaWeights::Linear& l : pre.linears()) {
        if (!l.head)
          pre.set_int4(l.matrix->name, quantize_weight_int4(*l.matrix, quant.linear.int4, activation));
      }
      const ModelQuant stored = stored_quant(pre);
      EXPECT_EQ(stored.name(), quant.name());
      const LlamaCudaModel gpu_stored(config, pre, stored, false);
      const LlamaCudaModel gpu_at_load(config, LlamaWeights::load(dir.str(), config), quant, false);
      const std::vector<float> g = all_logits(gpu_stored, tokens);
      EXPECT_EQ(g, all_logits(gpu_at_load, tokens));
      EXPECT_EQ(gpu_stored.weight_bytes(), gpu_at_load.weight_bytes());
      const LlamaRefModel cpu(config, std::move(pre), stored);
      EXPECT_LT(relative_diff(g, all_logits(cpu, tokens)), 3e-2);
    }
  }
}

// `qllm quantize` on the GPU writes the same bytes as on the CPU (the CUDA quantizer is the reference's bit
// for bit), in every format, scale search included.
TEST(QuantizeCheckpointCuda, SameFilesAsTheCpuQuantizer) {
  QLLM_SKIP_WITHOUT_GPU();
  testing::TempDir in;
  write_synthetic_checkpoint({.preset = "small", .out_dir = in.str(), .seed = 29});
  for (const auto& [format, quant, search] : {std::tuple{"qllm", "int4-g64", ScaleSearch::Mae},
                                              std::tuple{"qllm", "int4-global", ScaleSearch::None},
                                              std::tuple{"gptq", "int4-g32-asym", ScaleSearch::Mse},
                                              std::tuple{"awq", "int4-g64-asym", ScaleSearch::None}}) {
    SCOPED_TRACE(fmt::format("{} {}", format, quant));
    std::vector<std::string> files;
    for (const DeviceKind device : {DeviceKind::Cpu, DeviceKind::Cuda}) {
      testing::TempDir out;
      QuantizeOptions o;
      o.model = in.str();
      o.out_dir = out.str();
      o.format = parse_quant_format(format);
      o.quant = ModelQuant::parse(quant, o.format == QuantFormat::Qllm ? "same" : "bf16");
      o.quant.linear.int4.search = search;
      o.quant.lm_head.int4.search = search;
      o.device = device;
      o.force = true;
      o.verbose = false;
      const QuantizeReport r = quantize_checkpoint(o);
      EXPECT_EQ(r.device.find("cpu") == 0, device == DeviceKind::Cpu) << r.device;
      std::ifstream f(out.str() + "/model.safetensors", std::ios::binary);
      files.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
    ASSERT_FALSE(files[0].empty());
    EXPECT_TRUE(files[0] == files[1]) << "model.safetensors differs between the CPU and the GPU quantizer";
  }
}

}  // namespace
}  // namespace qllm
