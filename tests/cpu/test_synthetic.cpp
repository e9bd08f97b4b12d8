// qllm synth's checkpoints: deterministic, Hugging Face's layout and statistics, and a generated
// tokenizer in which every id below the special tokens is a real, decodable token.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "model/safetensors.h"
#include "qllm/half.h"
#include "qllm/tokenizer.h"
#include "tests/cpu/model_test_support.h"

namespace qllm {
namespace {

using testing::TempDir;

TEST(SyntheticCheckpoint, IsDeterministicAndShapedLikeHf) {
  TempDir a, b;
  write_synthetic_checkpoint({.preset = "tiny", .out_dir = a.str(), .seed = 3});
  write_synthetic_checkpoint({.preset = "tiny", .out_dir = b.str(), .seed = 3});
  const auto bytes = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  EXPECT_EQ(bytes(a.file("model.safetensors")), bytes(b.file("model.safetensors")));
  for (const char* f : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_TRUE(std::filesystem::exists(a.file(f))) << f;
  }
  const SafetensorsFile file(a.file("model.safetensors"));
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.metadata().at("qllm_synth_seed"), "3");
  EXPECT_FALSE(file.contains("lm_head.weight"));  // tied, like the real model
  EXPECT_EQ(file.tensors().size(), 1u + 2 * 9 + 1);

  // Weights ~ N(0, 0.02^2), norms 1.
  const TensorView w = file.tensor("model.layers.0.mlp.gate_proj.weight");
  double sum = 0, sum_sq = 0;
  const auto* bits = reinterpret_cast<const uint16_t*>(w.data);
  for (int64_t i = 0; i < w.numel(); ++i) {
    const double v = bf16_bits_to_float(bits[i]);
    sum += v;
    sum_sq += v * v;
  }
  EXPECT_NEAR(sum / w.numel(), 0.0, 0.002);
  EXPECT_NEAR(std::sqrt(sum_sq / w.numel()), 0.02, 0.001);
  const auto* norm = reinterpret_cast<const uint16_t*>(file.tensor("model.norm.weight").data);
  EXPECT_EQ(bf16_bits_to_float(norm[0]), 1.0f);

  // The generated tokenizer: 256 bytes + 16 specials = the config's vocabulary, BOS at 256.
  const auto tok = testing::read_json_file(a.file("tokenizer.json"));
  EXPECT_EQ(tok["model"]["vocab"].size(), 272u);
  EXPECT_EQ(tok["added_tokens"][0]["content"], "<|begin_of_text|>");
  EXPECT_EQ(tok["added_tokens"][9]["content"], "<|eot_id|>");
  EXPECT_EQ(tok["added_tokens"][9]["id"], 265);
  EXPECT_EQ(llama3_special_token(8), "<|eom_id|>");
  EXPECT_EQ(llama3_special_token(11), "<|reserved_special_token_3|>");
  EXPECT_EQ(llama3_special_token(255), "<|reserved_special_token_247|>");
}

TEST(SyntheticCheckpoint, GeneratedTokenizerCoversEveryIdBelowTheSpecials) {
  // As for Llama-3.2-1B (specials at 128000), at a size a test can afford: specials at 1000.
  TempDir dir;
  testing::write_json_file(dir.file("tokenizer.json"), byte_level_tokenizer_json(1000, 16));
  const auto j = testing::read_json_file(dir.file("tokenizer.json"));
  EXPECT_EQ(j["model"]["vocab"].size(), 1016u);
  EXPECT_EQ(j["model"]["merges"].size(), 1000u - 256u);
  std::vector<bool> seen(1016);
  for (const auto& [text, id] : j["model"]["vocab"].items()) seen.at(id.get<size_t>()) = true;
  EXPECT_EQ(std::count(seen.begin(), seen.end(), true), 1016);

  const Tokenizer tokenizer = Tokenizer::load(dir.path());
  for (int32_t id = 0; id < 1016; ++id) {
    const std::vector<int32_t> one = {id};
    EXPECT_NO_THROW(tokenizer.decode(one, false)) << id;
  }
  EXPECT_EQ(tokenizer.decode(std::vector<int32_t>{256}, false),
            std::string(2, '\0'));  // the first pair: 0x00 0x00
  EXPECT_EQ(tokenizer.bos_id(), 1000);
  const auto ids = tokenizer.encode("hello, world", true);
  EXPECT_EQ(ids.front(), 1000);
  EXPECT_EQ(tokenizer.decode(ids, true), "hello, world");
}

}  // namespace
}  // namespace qllm
