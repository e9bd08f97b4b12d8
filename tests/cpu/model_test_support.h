// Helpers of the model and engine tests: tiny synthetic checkpoints (written into a TempDir of
// tests/support/test_util.h), and the Hugging Face reference fixtures written by
// scripts/gen_hf_fixtures.py (tests/fixtures/hf/).
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "engine/generate.h"
#include "engine/load_model.h"
#include "model/synthetic.h"
#include "tests/support/test_util.h"

namespace qllm::testing {

// A checkpoint directory (or .gguf file) loaded with the CPU reference engine.
inline std::unique_ptr<Model> load_cpu_model(const std::string& path, const std::string& quant = "bf16") {
  LoadOptions options;
  options.device = DeviceKind::Cpu;
  options.quant = ModelQuant::parse(quant);
  options.verbose = false;
  return std::move(load_model(path, options).model);
}

// Writes `qllm synth --config tiny`'s checkpoint into `dir` and loads it with the CPU reference.
inline std::unique_ptr<Model> tiny_model(const TempDir& dir, uint64_t seed = 7) {
  write_synthetic_checkpoint({.preset = "tiny", .out_dir = dir.str(), .seed = seed});
  return load_cpu_model(dir.str());
}

// The logits [tokens, vocab] of `ids` as one fresh sequence.
inline std::vector<float> all_logits(const Model& model, std::span<const int32_t> ids) {
  const auto c = model.new_context({.max_sequences = 1,
                                    .max_positions = static_cast<int64_t>(ids.size()),
                                    .max_batch_tokens = static_cast<int64_t>(ids.size())});
  std::vector<float> logits(ids.size() * static_cast<size_t>(model.config().vocab_size));
  const SequenceInput input{0, 0, ids};
  ForwardOutputs outputs;
  outputs.all_logits = logits;
  c->forward(std::span(&input, 1), outputs);
  return logits;
}

// generate() on a fresh one-sequence context of the model's full length.
inline GenerateResult generate_fresh(const Model& model, std::span<const int32_t> prompt,
                                     const GenerateOptions& options) {
  const auto c = model.new_context({.max_sequences = 1});
  return generate(*c, 0, prompt, options);
}

inline nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

inline void write_json_file(const std::string& path, const nlohmann::json& j) {
  std::ofstream(path) << j.dump(2);
}

// A fixture of tests/fixtures/hf, or nullopt when the file does not exist (the caller then skips).
inline std::optional<nlohmann::json> hf_fixture(const std::string& name) {
  const auto path = std::filesystem::path(QLLM_SOURCE_DIR) / "tests/fixtures/hf" / name;
  if (!std::filesystem::exists(path)) return std::nullopt;
  return read_json_file(path.string());
}

#define QLLM_HF_FIXTURE_OR_SKIP(var, name)                                                                 \
  const auto var##_optional = ::qllm::testing::hf_fixture(name);                                           \
  if (!var##_optional) {                                                                                   \
    GTEST_SKIP() << "fixture tests/fixtures/hf/" << (name)                                                 \
                 << " is absent: run scripts/gen_hf_fixtures.py (needs torch + transformers) to write it"; \
  }                                                                                                        \
  const nlohmann::json& var = *var##_optional

// The proxy model's folder in the shared data, or "" when absent.
inline std::string proxy_model_dir() {
  const std::string shared = shared_dir();
  const std::string dir = shared.empty() ? std::string() : shared + "/models/proxy-llama-22m";
  return !dir.empty() && std::filesystem::exists(dir + "/config.json") ? dir : std::string();
}

#define QLLM_PROXY_OR_SKIP(var)                               \
  const std::string var = ::qllm::testing::proxy_model_dir(); \
  if (var.empty()) GTEST_SKIP() << "shared/models/proxy-llama-22m is absent (set QLLM_SHARED to its parent)"

}  // namespace qllm::testing
