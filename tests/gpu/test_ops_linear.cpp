// Op-harness rows of QuantLinear (src/kernels/gemm/quant_linear.h) against the CPU reference linear
// (model/cpu_linear.h: the same mode's dequantized weights, computed in f32) on the shapes that are not whole
// kernel tiles: partial last INT4 groups (K = 576, 192, 320 with g128: SmolLM2-135M and the `small` preset),
// N and K not multiples of 64 (the `small` preset's lm_head N = 272; K = 200, 136) or of 8 (K = 100).
// Bound: relative Frobenius error 8e-3 (the one of tests/gpu/test_quant_linear.cpp: bf16 outputs, fp32
// accumulation in another order, tensor-core weights rounded to bf16 against the reference's exact ones).
#include <fmt/format.h>

#include "kernels/gemm/quant_linear.h"
#include "model/cpu_linear.h"
#include "model/prequantized.h"
#include "tests/cpu/q4_gguf_test_support.h"
#include "tests/gpu/op_harness.h"
#include "tests/gpu/ops_test_util.h"

namespace qllm::testing {
namespace {

OpResult run_linear(int64_t n, int64_t k, int64_t m, const std::string& mode_name, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = static_cast<float>(0.05 * rng.normal());
  const QuantMode mode = QuantMode::parse(mode_name);
  const DType activation = mode.is_dense() ? mode.dense_dtype : DType::BF16;
  const std::vector<uint16_t> x = random_bits16(static_cast<size_t>(m * k), rng, activation);
  const std::vector<float> x_values = bits16_to_floats(x, activation);
  std::vector<float> ref(static_cast<size_t>(m * n));
  const CpuLinear reference(WeightMatrix{"w", DType::F32, w.data(), n, k}, mode, activation);
  reference.forward(ref.data(), x_values.data(), m);

  TestStream stream;
  GemmExecutor executor;
  QuantLinear layer(HostWeight{w.data(), DType::F32, n, k}, mode, activation, stream.get());
  layer.reserve(executor, m);
  DeviceBuffer<uint16_t> d_x = to_device(x), d_y(static_cast<size_t>(m * n));
  poison(d_y);
  layer.forward(executor, d_x.data(), d_y.data(), m, stream.get());
  stream.sync();
  return compare(bits16_to_floats(d_y.download(), activation), ref, Metric::RelFro);
}

QLLM_OP_CASES(quant_linear) {
  std::vector<OpCase> cases;
  uint64_t seed = 300;
  const std::pair<int64_t, int64_t> shapes[] = {{576, 576}, {192, 576}, {320, 192}, {192, 320},
                                                {272, 192}, {272, 200}, {200, 136}, {130, 100}};
  for (const auto& [n, k] : shapes) {
    for (const char* mode : {"int4-g128", "int4-g128-asym", "int4-g32", "int4-rowwise", "int8", "bf16"}) {
      for (const int64_t m : {1, 7, 33, 130}) {
        cases.push_back({"quant_linear", fmt::format("tokens={} n={} k={}", m, n, k), mode, Metric::RelFro,
                         8e-3, [=, s = seed++] { return run_linear(n, k, m, mode, s); }});
      }
    }
  }
  return cases;
}

// A pre-quantized weight uploaded as stored (QuantLinear(Int4Matrix)) on random activations [m, K], against
// the CPU reference linear computing with the same matrix exactly.
OpResult stored_linear_against_cpu(Int4Matrix matrix, const QuantMode& mode, int64_t m, DType activation,
                                   Rng& rng) {
  const int64_t n = matrix.rows, k = matrix.cols;
  WeightMatrix stored{"w", DType::F32, nullptr, n, k};
  stored.int4 = std::make_shared<const Int4Matrix>(std::move(matrix));
  const std::vector<uint16_t> x = random_bits16(static_cast<size_t>(m * k), rng, activation);
  const std::vector<float> x_values = bits16_to_floats(x, activation);
  std::vector<float> ref(static_cast<size_t>(m * n));
  CpuLinear(stored, mode, activation).forward(ref.data(), x_values.data(), m);

  TestStream stream;
  GemmExecutor executor;
  QuantLinear layer(*stored.int4, activation);
  layer.reserve(executor, m);
  DeviceBuffer<uint16_t> d_x = to_device(x), d_y(static_cast<size_t>(m * n));
  poison(d_y);
  layer.forward(executor, d_x.data(), d_y.data(), m, stream.get());
  stream.sync();
  return compare(bits16_to_floats(d_y.download(), activation), ref, Metric::RelFro);
}

// A pre-quantized weight (model/prequantized.h): the CPU reference quantizer's Int4Matrix uploaded as stored
// (QuantLinear(Int4Matrix)), with bf16 scales (qllm's checkpoints) or f16 scales and activations (GPTQ/AWQ's),
// against the CPU reference linear computing with that matrix exactly.
OpResult run_stored_linear(int64_t n, int64_t k, int64_t m, const std::string& mode_name, DType activation,
                           uint64_t seed) {
  Rng rng(seed);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = static_cast<float>(0.05 * rng.normal());
  const QuantMode mode = QuantMode::parse(mode_name);
  return stored_linear_against_cpu(
      quantize_weight_int4(WeightMatrix{"w", DType::F32, w.data(), n, k}, mode.int4, activation), mode, m,
      activation, rng);
}

QLLM_OP_CASES(quant_linear_stored) {
  std::vector<OpCase> cases;
  uint64_t seed = 900;
  const std::pair<int64_t, int64_t> shapes[] = {{576, 576}, {192, 576}, {272, 200}, {130, 100}};
  for (const auto& [n, k] : shapes) {
    for (const char* mode : {"int4-g64", "int4-g32-asym", "int4-rowwise", "int4-global"}) {
      for (const DType activation : {DType::BF16, DType::F16}) {
        for (const int64_t m : {1, 33}) {
          cases.push_back({"quant_linear_stored",
                           fmt::format("tokens={} n={} k={} {} activations", m, n, k, dtype_name(activation)),
                           mode, Metric::RelFro, 8e-3,
                           [=, s = seed++] { return run_stored_linear(n, k, m, mode, activation, s); }});
        }
      }
    }
  }
  return cases;
}

// Min-offset weights (GGUF Q4_1: u * s + m, random nibbles, scales and minimums) uploaded as stored, against
// the CPU reference linear computing with their exact f32 values (ggml's): the engines' path for a Q4_1 file.
// f16 scales with f16 activations (the files'), bf16 with bf16; SmolLM2's shapes and tails; M from decode to
// prefill (skinny, tiled, dequant + cuBLAS). Bound as above.
OpResult run_stored_min_linear(int64_t n, int64_t k, int64_t m, DType activation, uint64_t seed) {
  Rng rng(seed);
  Int4Matrix matrix = random_min_offset(n, k, 32, activation, rng);
  QuantMode mode;
  mode.kind = QuantMode::Kind::Int4;
  mode.int4 = matrix.scheme;
  return stored_linear_against_cpu(std::move(matrix), mode, m, activation, rng);
}

QLLM_OP_CASES(quant_linear_stored_min) {
  std::vector<OpCase> cases;
  uint64_t seed = 1300;
  const std::pair<int64_t, int64_t> shapes[] = {{576, 576},  {192, 576}, {1536, 576},
                                                {576, 1536}, {272, 192}, {130, 96}};
  for (const auto& [n, k] : shapes) {
    for (const DType activation : {DType::F16, DType::BF16}) {
      for (const int64_t m : {1, 7, 33, 130}) {
        cases.push_back({"quant_linear_stored",
                         fmt::format("tokens={} n={} k={} {} activations", m, n, k, dtype_name(activation)),
                         "int4-g32-min", Metric::RelFro, 8e-3,
                         [=, s = seed++] { return run_stored_min_linear(n, k, m, activation, s); }});
      }
    }
  }
  return cases;
}

}  // namespace
}  // namespace qllm::testing
