// The op harness (llama.cpp's test-backend-ops, for qllm): every GPU op is a table of cases, op x shape x
// dtype/scheme, each run on the CUDA backend with its outputs poisoned first (NaN bytes), then compared with
// its CPU reference (the `*_ref.cpp` beside the kernel, the spec) under the bound stated in its row. An
// element the kernel did not write stays NaN, and NaN never passes a bound.
//
// An op family adds rows from its own file:
//   QLLM_OP_CASES(rmsnorm) {
//     std::vector<OpCase> cases;
//     for (int64_t tokens : {1, 7, 64}) cases.push_back({"rmsnorm", fmt::format("tokens={}", tokens), "bf16",
//         Metric::MaxRel, 8e-3, [=] { ...; return compare(got, ref, Metric::MaxRel); }});
//     return cases;
//   }
// Shapes: odd sizes and the real models' (Llama-3.2-1B: hidden 2048, SmolLM2-135M: hidden 576, kv dim 192).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kernels/runtime/cuda_utils.h"

namespace qllm::testing {

enum class Metric {
  MaxAbs,  // max |got - ref|
  MaxRel,  // max |got - ref| / max(|ref|, floor): per-element relative error, floor keeps near-zeros sane
  RelFro,  // ||got - ref||_F / ||ref||_F: for long dot products, where single elements may near-tie
  Exact,   // number of elements that differ (bitwise equal floats, or equal integers)
};
const char* metric_name(Metric metric);

// The comparison of one case: `error` under the row's metric (NaN or +inf when any output is non-finite).
struct OpResult {
  double error = 0;
  std::string detail;  // e.g. the worst element, for the failure message
};

struct OpCase {
  std::string op;     // "rmsnorm"
  std::string shape;  // "tokens=7 hidden=576"
  std::string dtype;  // "bf16", "int4-g128", ...
  Metric metric = Metric::MaxRel;
  double bound = 0;  // the case passes when error <= bound
  std::function<OpResult()> run;
  std::string name() const;  // "rmsnorm/tokens=7 hidden=576/bf16", for the test list
};

// Compares `got` with `ref`; `floor` is the denominator floor of MaxRel. Any non-finite element of `got`
// makes the error +inf.
OpResult compare(std::span<const float> got, std::span<const float> ref, Metric metric, double floor = 1e-2);
OpResult compare_exact(std::span<const int32_t> got, std::span<const int32_t> ref);

// Fills a device buffer with 0xff bytes: NaN as bf16, f16 and f32, -1 as integers.
template <typename T>
void poison(DeviceBuffer<T>& buffer) {
  buffer.fill_bytes(0xff);
}

// bf16 bits <-> float vectors, and float data rounded to bf16 (inputs the GPU and the reference share).
std::vector<uint16_t> to_bf16_bits(std::span<const float> values);
std::vector<float> from_bf16_bits(std::span<const uint16_t> bits);
std::vector<float> round_to_bf16(std::vector<float> values);
std::vector<uint16_t> to_f16_bits(std::span<const float> values);
std::vector<float> from_f16_bits(std::span<const uint16_t> bits);
std::vector<float> round_to_f16(std::vector<float> values);

// The registry behind QLLM_OP_CASES.
using OpCaseFactory = std::vector<OpCase> (*)();
bool register_op_cases(const char* family, OpCaseFactory factory);
std::vector<OpCase> all_op_cases();

}  // namespace qllm::testing

#define QLLM_OP_CASES(family)                                               \
  static std::vector<::qllm::testing::OpCase> qllm_op_cases_##family();     \
  [[maybe_unused]] static const bool qllm_op_registered_##family =          \
      ::qllm::testing::register_op_cases(#family, &qllm_op_cases_##family); \
  static std::vector<::qllm::testing::OpCase> qllm_op_cases_##family()
