// The CPU reference forward pass on a tiny synthetic Llama: the backend-independent invariants
// (tests/support/forward_invariants.h) in every quantization mode, weight formats and layouts (f32/f16,
// sharded, untied lm_head), and clear errors for bad checkpoints.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <tuple>

#include "model/safetensors.h"
#include "qllm/error.h"
#include "qllm/half.h"
#include "tests/cpu/model_test_support.h"
#include "tests/support/forward_invariants.h"

namespace qllm {
namespace {

using testing::TempDir;

using testing::relative_diff;

// Loads a checkpoint with the CPU reference engine.
std::unique_ptr<Model> load_cpu(const std::string& dir, const std::string& quant = "bf16") {
  LoadOptions options;
  options.device = DeviceKind::Cpu;
  options.quant = ModelQuant::parse(quant);
  options.verbose = false;
  return std::move(load_model(dir, options).model);
}

// Logits of every token of `tokens` on a fresh context.
std::vector<float> run(const Model& model, std::span<const int32_t> tokens) {
  const auto c =
      model.new_context({.max_sequences = 1, .max_positions = static_cast<int64_t>(tokens.size())});
  std::vector<float> logits(tokens.size() * static_cast<size_t>(model.config().vocab_size));
  const SequenceInput input{0, 0, tokens};
  c->forward(std::span(&input, 1), {.all_logits = logits});
  return logits;
}

void expect_error(const std::function<void()>& f, std::initializer_list<std::string> fragments) {
  try {
    f();
    FAIL() << "no error";
  } catch (const Error& e) {
    for (const auto& s : fragments) EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what();
  }
}

// A copy of a checkpoint's tensors that a test can edit and write back.
struct OwnedTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

std::vector<OwnedTensor> read_all(const std::string& dir) {
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir);
  std::vector<OwnedTensor> out;
  for (const std::string& name : ckpt.names()) {
    const TensorView t = ckpt.tensor(name);
    out.push_back({name, t.dtype(), t.shape(), {t.bytes().begin(), t.bytes().end()}});
  }
  return out;
}

std::vector<TensorToWrite> to_write(const std::vector<OwnedTensor>& tensors) {
  std::vector<TensorToWrite> out;
  for (const OwnedTensor& t : tensors) out.push_back({t.name, t.dtype, t.shape, t.bytes, {}});
  return out;
}

// Converts a bf16 tensor to f32 or f16 (exact for f32).
void convert(OwnedTensor& t, DType to) {
  const size_t n = t.bytes.size() / 2;
  std::vector<std::byte> out(n * dtype_size(to));
  for (size_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, t.bytes.data() + 2 * i, 2);
    const float v = bf16_bits_to_float(bits);
    if (to == DType::F32) {
      std::memcpy(out.data() + 4 * i, &v, 4);
    } else {
      const uint16_t h = float_to_half_bits(v);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  t.dtype = to;
  t.bytes = std::move(out);
}

// A second directory with the tiny model's config and `tensors` written as model.safetensors.
// Copies a checkpoint's config and tokenizer files (not its weights).
void copy_model_files(const TempDir& from, const TempDir& to) {
  for (const char* name :
       {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    if (std::filesystem::exists(from.file(name))) {
      std::filesystem::copy_file(from.file(name), to.file(name),
                                 std::filesystem::copy_options::overwrite_existing);
    }
  }
}

void write_variant(const TempDir& from, const TempDir& to, const std::vector<OwnedTensor>& tensors,
                   const nlohmann::json* config = nullptr) {
  copy_model_files(from, to);
  if (config) testing::write_json_file(to.file("config.json"), *config);
  write_safetensors(to.file("model.safetensors"), to_write(tensors));
}

class TinyModel : public ::testing::Test {
 protected:
  void SetUp() override {
    write_synthetic_checkpoint({.preset = "tiny", .out_dir = dir_.str(), .seed = 7});
    model_ = load_cpu(dir_.str());
    vocab_ = model_->config().vocab_size;
  }
  std::vector<int32_t> random_tokens(size_t n, Rng& rng) const {
    std::vector<int32_t> t(n);
    for (auto& id : t) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab_)));
    return t;
  }
  TempDir dir_;
  std::unique_ptr<Model> model_;
  int64_t vocab_ = 0;
};

using testing::ForwardInvariants;
INSTANTIATE_TEST_SUITE_P(
    Cpu, ForwardInvariants,
    ::testing::Values(testing::Backend{"bf16", "cpu", "bf16", 1e-5},
                      testing::Backend{"f16", "cpu", "f16", 1e-5},
                      testing::Backend{"int4_g32", "cpu", "int4-g32", 1e-5},
                      testing::Backend{"int4_rowwise_asym", "cpu", "int4-rowwise-asym", 1e-5},
                      testing::Backend{"int8", "cpu", "int8", 1e-5},
                      testing::Backend{"small_bf16", "cpu", "bf16", 1e-5, "small"},
                      // K = 192 and 320 with g128: every row ends in a partial group
                      testing::Backend{"small_int4_g128", "cpu", "int4-g128", 1e-5, "small"}),
    [](const auto& info) { return info.param.name; });

TEST_F(TinyModel, F32AndF16WeightsGiveTheSameLogits) {
  Rng rng(testing::fresh_seed());
  const std::vector<int32_t> tokens = random_tokens(8, rng);
  const std::vector<float> reference = run(*model_, tokens);
  for (DType dtype : {DType::F32, DType::F16}) {
    TempDir variant;
    auto tensors = read_all(dir_.str());
    for (auto& t : tensors) convert(t, dtype);
    write_variant(dir_, variant, tensors);
    const auto model = load_cpu(variant.str(), "bf16");
    const double diff = relative_diff(run(*model, tokens), reference);
    // bf16 -> f32 -> bf16 is exact; bf16 -> f16 -> bf16 rounds some small weights.
    EXPECT_LT(diff, dtype == DType::F32 ? 1e-6 : 1e-2) << safetensors_dtype_name(dtype);
  }
}

TEST_F(TinyModel, ShardedCheckpointGivesTheSameLogits) {
  TempDir sharded;
  const auto tensors = read_all(dir_.str());
  copy_model_files(dir_, sharded);
  write_sharded_safetensors(sharded.str(), to_write(tensors), 20000);
  const auto model = load_cpu(sharded.str());
  const std::vector<int32_t> tokens = {5, 6, 7};
  EXPECT_EQ(relative_diff(run(*model, tokens), run(*model_, tokens)), 0.0);
}

TEST_F(TinyModel, UntiedLmHeadIsUsed) {
  auto tensors = read_all(dir_.str());
  OwnedTensor head;
  for (const auto& t : tensors) {
    if (t.name == "model.embed_tokens.weight") head = t;
  }
  head.name = "lm_head.weight";
  for (size_t i = 0; i < head.bytes.size(); i += 2)
    head.bytes[i + 1] ^= std::byte{0x80};  // negate every weight
  tensors.push_back(head);
  nlohmann::json config = testing::read_json_file(dir_.file("config.json"));
  config["tie_word_embeddings"] = false;
  TempDir untied;
  write_variant(dir_, untied, tensors, &config);
  const auto model = load_cpu(untied.str());
  const std::vector<int32_t> tokens = {3, 4};
  const auto a = run(*model, tokens);
  const auto b = run(*model_, tokens);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], -b[i]) << i;  // negated head, negated logits

  // Untied without lm_head.weight: a clear error.
  tensors.pop_back();
  TempDir missing;
  write_variant(dir_, missing, tensors, &config);
  expect_error([&] { load_cpu(missing.str()); }, {"missing tensor 'lm_head.weight'", "[272, 64]"});
}

TEST_F(TinyModel, BadCheckpointsFailWithClearErrors) {
  auto tensors = read_all(dir_.str());
  auto find = [&](std::vector<OwnedTensor>& ts, const std::string& name) -> OwnedTensor& {
    for (auto& t : ts) {
      if (t.name == name) return t;
    }
    throw std::runtime_error("no " + name);
  };
  {  // missing tensor
    auto ts = tensors;
    std::erase_if(ts, [](const OwnedTensor& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; });
    TempDir d;
    write_variant(dir_, d, ts);
    expect_error([&] { load_cpu(d.str()); },
                 {"missing tensor 'model.layers.1.mlp.up_proj.weight'", "[128, 64]"});
  }
  {  // wrong shape
    auto ts = tensors;
    find(ts, "model.layers.0.self_attn.k_proj.weight").shape = {64, 32};
    TempDir d;
    write_variant(dir_, d, ts);
    expect_error([&] { load_cpu(d.str()); },
                 {"model.layers.0.self_attn.k_proj.weight", "shape [64, 32], expected [32, 64]"});
  }
  // A NaN in a matrix or a norm vector: the error names the tensor and the element.
  auto poison = [](OwnedTensor& t, int64_t element) {
    if (t.dtype == DType::F32) {
      const uint32_t nan = 0x7fc00000u;
      std::memcpy(t.bytes.data() + element * 4, &nan, 4);
    } else {
      const uint16_t nan = t.dtype == DType::BF16 ? 0x7fc0 : 0x7e00;
      std::memcpy(t.bytes.data() + element * 2, &nan, 2);
    }
  };
  for (auto [name, element, where] :
       {std::tuple{"model.layers.0.self_attn.k_proj.weight", 70, "[1, 6]"},
        std::tuple{"model.layers.1.post_attention_layernorm.weight", 9, "[0, 9]"}}) {
    auto ts = tensors;
    poison(find(ts, name), element);
    TempDir d;
    write_variant(dir_, d, ts);
    expect_error([&] { load_cpu(d.str()); }, {"model.safetensors", name, "NaN or Inf", where});
  }
  {  // integer weights
    auto ts = tensors;
    OwnedTensor& t = find(ts, "model.norm.weight");
    t.dtype = DType::I8;
    t.bytes.resize(64);
    TempDir d;
    write_variant(dir_, d, ts);
    expect_error([&] { load_cpu(d.str()); }, {"model.norm.weight", "dtype I8"});
  }
  {  // truncated file
    TempDir d;
    write_variant(dir_, d, tensors);
    std::filesystem::resize_file(d.file("model.safetensors"),
                                 std::filesystem::file_size(d.file("model.safetensors")) - 100);
    expect_error([&] { load_cpu(d.str()); }, {"model.safetensors", "past the data section"});
  }
  {  // no weights at all
    TempDir d;
    copy_model_files(dir_, d);
    expect_error([&] { load_cpu(d.str()); }, {"no model.safetensors"});
  }
  {  // config that does not match the weights
    nlohmann::json config = testing::read_json_file(dir_.file("config.json"));
    config["intermediate_size"] = 96;
    TempDir d;
    write_variant(dir_, d, tensors, &config);
    expect_error([&] { load_cpu(d.str()); }, {"mlp.", "expected [96, 64]"});
  }
  expect_error([&] { load_cpu(dir_.file("nowhere")); }, {"nowhere"});
}

}  // namespace
}  // namespace qllm
