// The CPU reference forward pass on a tiny synthetic Llama: causality, KV-cache consistency (incremental
// decode and chunked prefill equal the full forward), batches equal separate sequences, weight formats
// and layouts (f32/f16, sharded, untied lm_head), and clear errors for bad checkpoints and overflows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <tuple>

#include "model/safetensors.h"
#include "qllm/error.h"
#include "qllm/half.h"
#include "tests/cpu/model_test_support.h"

namespace qllm {
namespace {

using testing::TempDir;

std::vector<int32_t> random_tokens(size_t n, int64_t vocab, Rng& rng) {
  std::vector<int32_t> t(n);
  for (auto& id : t) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
  return t;
}

std::vector<float> run_one(CausalLm& model, std::span<const int32_t> tokens, int64_t start = 0, int slot = 0,
                           bool last_only = false) {
  const SequenceInput input{slot, start, tokens};
  return model.forward(std::span(&input, 1), last_only);
}

// Largest |a - b| relative to the largest |b|.
double relative_diff(std::span<const float> a, std::span<const float> b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return diff / scale;
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
  TensorDType dtype;
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
void convert(OwnedTensor& t, TensorDType to) {
  const size_t n = t.bytes.size() / 2;
  std::vector<std::byte> out(n * tensor_dtype_size(to));
  for (size_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, t.bytes.data() + 2 * i, 2);
    const float v = bf16_bits_to_float(bits);
    if (to == TensorDType::F32) {
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
void write_variant(const TempDir& from, const TempDir& to, const std::vector<OwnedTensor>& tensors,
                   const nlohmann::json* config = nullptr) {
  std::filesystem::copy_file(from.file("config.json"), to.file("config.json"),
                             std::filesystem::copy_options::overwrite_existing);
  if (config) testing::write_json_file(to.file("config.json"), *config);
  write_safetensors(to.file("model.safetensors"), to_write(tensors));
}

class TinyModel : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = testing::tiny_model(dir_);
    vocab_ = model_->config().vocab_size;
  }
  TempDir dir_;
  std::unique_ptr<LlamaRef> model_;
  int64_t vocab_ = 0;
};

TEST_F(TinyModel, FutureTokensDoNotChangeEarlierLogits) {
  Rng rng(testing::fresh_seed());
  std::vector<int32_t> a = random_tokens(12, vocab_, rng);
  std::vector<int32_t> b = a;
  for (size_t i = 6; i < b.size(); ++i) b[i] = static_cast<int32_t>((b[i] + 1 + i) % vocab_);
  model_->allocate_cache(1, 12);
  const std::vector<float> la = run_one(*model_, a);
  const std::vector<float> lb = run_one(*model_, b);
  const size_t prefix = 6 * vocab_;
  EXPECT_EQ(relative_diff(std::span(la).first(prefix), std::span(lb).first(prefix)), 0.0);
  EXPECT_GT(relative_diff(std::span(la).subspan(prefix), std::span(lb).subspan(prefix)), 1e-3);
}

TEST_F(TinyModel, IncrementalDecodeEqualsFullForward) {
  Rng rng(testing::fresh_seed());
  const std::vector<int32_t> tokens = random_tokens(20, vocab_, rng);
  model_->allocate_cache(1, 20);
  const std::vector<float> full = run_one(*model_, tokens);

  // One token at a time through the cache.
  std::vector<float> incremental;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto row = run_one(*model_, std::span(tokens).subspan(i, 1), static_cast<int64_t>(i));
    incremental.insert(incremental.end(), row.begin(), row.end());
  }
  EXPECT_LT(relative_diff(incremental, full), 1e-5);
  EXPECT_EQ(model_->cache().length(0), 20);

  // Chunked prefill 7 + 9 + 4, and last_only rows.
  std::vector<float> chunked;
  int64_t start = 0;
  for (int64_t n : {7, 9, 4}) {
    const auto rows = run_one(*model_, std::span(tokens).subspan(start, n), start);
    chunked.insert(chunked.end(), rows.begin(), rows.end());
    start += n;
  }
  EXPECT_LT(relative_diff(chunked, full), 1e-5);
  const auto last = run_one(*model_, std::span(tokens).subspan(15, 5), 15, 0, /*last_only=*/true);
  EXPECT_LT(relative_diff(last, std::span(full).subspan(19 * vocab_)), 1e-5);
}

TEST_F(TinyModel, RewindingASequenceReplacesItsTail) {
  Rng rng(testing::fresh_seed());
  const std::vector<int32_t> tokens = random_tokens(10, vocab_, rng);
  model_->allocate_cache(1, 10);
  const std::vector<float> full = run_one(*model_, tokens);
  std::vector<int32_t> other = tokens;
  other[8] = static_cast<int32_t>((other[8] + 3) % vocab_);
  run_one(*model_, std::span(other).subspan(5), 5);  // a different tail at positions 5..9
  const auto again = run_one(*model_, std::span(tokens).subspan(5), 5);
  EXPECT_LT(relative_diff(again, std::span(full).subspan(5 * vocab_)), 1e-5);
}

TEST_F(TinyModel, BatchEqualsSeparateSequences) {
  Rng rng(testing::fresh_seed());
  const std::vector<std::vector<int32_t>> seqs = {
      random_tokens(9, vocab_, rng), random_tokens(3, vocab_, rng), random_tokens(14, vocab_, rng)};
  std::vector<std::vector<float>> separate;
  model_->allocate_cache(1, 16);
  for (const auto& s : seqs) separate.push_back(run_one(*model_, s));

  model_->allocate_cache(3, 16);
  std::vector<SequenceInput> batch;
  for (size_t i = 0; i < seqs.size(); ++i) batch.push_back({static_cast<int>(2 - i), 0, seqs[i]});
  const std::vector<float> all = model_->forward(batch, false);
  size_t row = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const size_t n = seqs[i].size() * vocab_;
    EXPECT_LT(relative_diff(std::span(all).subspan(row, n), separate[i]), 1e-5) << "sequence " << i;
    row += n;
  }

  // Continue all three by one token each, at their own positions: rows = last tokens.
  std::vector<int32_t> next = {1, 2, 3};
  std::vector<SequenceInput> step;
  for (size_t i = 0; i < seqs.size(); ++i) {
    step.push_back(
        {static_cast<int>(2 - i), static_cast<int64_t>(seqs[i].size()), std::span(next).subspan(i, 1)});
  }
  const std::vector<float> stepped = model_->forward(step, true);
  ASSERT_EQ(stepped.size(), 3 * vocab_);
  model_->allocate_cache(1, 16);
  for (size_t i = 0; i < seqs.size(); ++i) {
    std::vector<int32_t> extended = seqs[i];
    extended.push_back(next[i]);
    const auto expected = run_one(*model_, extended, 0, 0, true);
    EXPECT_LT(relative_diff(std::span(stepped).subspan(i * vocab_, vocab_), expected), 1e-5) << i;
  }
}

TEST_F(TinyModel, ForwardRejectsOverflowAndBadInput) {
  const std::vector<int32_t> tokens = {1, 2, 3, 4};
  EXPECT_THROW(run_one(*model_, tokens), Error);  // no cache yet
  model_->allocate_cache(2, 4);
  run_one(*model_, tokens);
  expect_error([&] { run_one(*model_, std::span(tokens).first(1), 4); },
               {"context overflow", "KV cache capacity 4"});
  expect_error([&] { run_one(*model_, tokens, 0, 5); }, {"slot 5"});
  expect_error([&] { run_one(*model_, tokens, 3, 1); }, {"starts at position 3", "holds only 0"});
  const std::vector<int32_t> bad = {1, static_cast<int32_t>(vocab_)};
  expect_error([&] { run_one(*model_, bad); }, {"outside the vocabulary"});
  std::vector<SequenceInput> twice = {{0, 0, tokens}, {0, 0, tokens}};
  expect_error([&] { model_->forward(twice, false); }, {"slot 0 appears twice"});
  expect_error([&] { model_->allocate_cache(1, model_->config().max_position_embeddings + 1); },
               {"exceeds max_position_embeddings"});

  // A context of 8 positions: the 9th is refused, naming max_position_embeddings.
  nlohmann::json config = testing::read_json_file(dir_.file("config.json"));
  config["max_position_embeddings"] = 8;
  TempDir short_context;
  write_variant(dir_, short_context, read_all(dir_.str()), &config);
  const auto model = LlamaRef::load(short_context.str());
  model->allocate_cache(1, 8);
  const std::vector<int32_t> eight = {1, 2, 3, 4, 5, 6, 7, 8};
  run_one(*model, eight);
  expect_error([&] { run_one(*model, std::span(eight).first(1), 8); },
               {"context overflow", "9 positions", "max_position_embeddings 8"});
}

TEST_F(TinyModel, F32AndF16WeightsGiveTheSameLogits) {
  Rng rng(testing::fresh_seed());
  const std::vector<int32_t> tokens = random_tokens(8, vocab_, rng);
  model_->allocate_cache(1, 8);
  const std::vector<float> reference = run_one(*model_, tokens);
  for (TensorDType dtype : {TensorDType::F32, TensorDType::F16}) {
    TempDir variant;
    auto tensors = read_all(dir_.str());
    for (auto& t : tensors) convert(t, dtype);
    write_variant(dir_, variant, tensors);
    const auto model = LlamaRef::load(variant.str());
    EXPECT_EQ(model->weights().matrix_dtype(), *float_dtype(dtype));
    model->allocate_cache(1, 8);
    const double diff = relative_diff(run_one(*model, tokens), reference);
    // bf16 -> f32 is exact; bf16 -> f16 rounds some small weights.
    EXPECT_LT(diff, dtype == TensorDType::F32 ? 1e-6 : 1e-2) << safetensors_dtype_name(dtype);
  }
}

TEST_F(TinyModel, ShardedCheckpointGivesTheSameLogits) {
  TempDir sharded;
  const auto tensors = read_all(dir_.str());
  std::filesystem::copy_file(dir_.file("config.json"), sharded.file("config.json"));
  write_sharded_safetensors(sharded.str(), to_write(tensors), 20000);
  const auto model = LlamaRef::load(sharded.str());
  const std::vector<int32_t> tokens = {5, 6, 7};
  model->allocate_cache(1, 3);
  model_->allocate_cache(1, 3);
  EXPECT_EQ(relative_diff(run_one(*model, tokens), run_one(*model_, tokens)), 0.0);
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
  const auto model = LlamaRef::load(untied.str());
  const std::vector<int32_t> tokens = {3, 4};
  model->allocate_cache(1, 2);
  model_->allocate_cache(1, 2);
  const auto a = run_one(*model, tokens);
  const auto b = run_one(*model_, tokens);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], -b[i]) << i;  // negated head, negated logits

  // Untied without lm_head.weight: a clear error.
  tensors.pop_back();
  TempDir missing;
  write_variant(dir_, missing, tensors, &config);
  expect_error([&] { LlamaRef::load(missing.str()); }, {"missing tensor 'lm_head.weight'", "[272, 64]"});
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
    expect_error([&] { LlamaRef::load(d.str()); },
                 {"missing tensor 'model.layers.1.mlp.up_proj.weight'", "[128, 64]"});
  }
  {  // wrong shape
    auto ts = tensors;
    find(ts, "model.layers.0.self_attn.k_proj.weight").shape = {64, 32};
    TempDir d;
    write_variant(dir_, d, ts);
    expect_error([&] { LlamaRef::load(d.str()); },
                 {"model.layers.0.self_attn.k_proj.weight", "shape [64, 32], expected [32, 64]"});
  }
  // A NaN in a matrix or a norm vector: the error names the tensor and the element.
  auto poison = [](OwnedTensor& t, int64_t element) {
    if (t.dtype == TensorDType::F32) {
      const uint32_t nan = 0x7fc00000u;
      std::memcpy(t.bytes.data() + element * 4, &nan, 4);
    } else {
      const uint16_t nan = t.dtype == TensorDType::BF16 ? 0x7fc0 : 0x7e00;
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
    expect_error([&] { LlamaRef::load(d.str()); }, {"model.safetensors", name, "NaN or Inf", where});
  }
  {  // integer weights
    auto ts = tensors;
    OwnedTensor& t = find(ts, "model.norm.weight");
    t.dtype = TensorDType::I8;
    t.bytes.resize(64);
    TempDir d;
    write_variant(dir_, d, ts);
    expect_error([&] { LlamaRef::load(d.str()); }, {"model.norm.weight", "dtype I8"});
  }
  {  // truncated file
    TempDir d;
    write_variant(dir_, d, tensors);
    std::filesystem::resize_file(d.file("model.safetensors"),
                                 std::filesystem::file_size(d.file("model.safetensors")) - 100);
    expect_error([&] { LlamaRef::load(d.str()); }, {"model.safetensors", "past the data section"});
  }
  {  // no weights at all
    TempDir d;
    std::filesystem::copy_file(dir_.file("config.json"), d.file("config.json"));
    expect_error([&] { LlamaRef::load(d.str()); }, {"no model.safetensors"});
  }
  {  // config that does not match the weights
    nlohmann::json config = testing::read_json_file(dir_.file("config.json"));
    config["intermediate_size"] = 96;
    TempDir d;
    write_variant(dir_, d, tensors, &config);
    expect_error([&] { LlamaRef::load(d.str()); }, {"mlp.", "expected [96, 64]"});
  }
  expect_error([&] { LlamaRef::load(dir_.file("nowhere")); }, {"nowhere"});
}

}  // namespace
}  // namespace qllm
