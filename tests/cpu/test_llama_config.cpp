// LlamaConfig: both config.json key styles, defaults, unsupported features, and the llama3 rope
// inverse frequencies against values computed here independently (in long double, from the formula).
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "model/llama_config.h"
#include "qllm/error.h"
#include "tests/cpu/model_test_support.h"

namespace qllm {
namespace {

using json = nlohmann::json;

// Real Llama-3.2-1B-Instruct config.json (transformers 4 style).
json llama_3_2_1b_json() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072,
    "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16,
    "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256})");
}

// transformers 5 style, as the proxy model's config.json.
json transformers5_json() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 0, "dtype": "bfloat16",
    "eos_token_id": [1, 4], "head_dim": 64, "hidden_act": "silu", "hidden_size": 512, "intermediate_size": 1536,
    "max_position_embeddings": 4096, "mlp_bias": false, "model_type": "llama", "num_attention_heads": 8,
    "num_hidden_layers": 6, "num_key_value_heads": 2, "pad_token_id": null, "rms_norm_eps": 1e-05,
    "rope_parameters": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                        "original_max_position_embeddings": 8192, "rope_theta": 500000.0, "rope_type": "llama3"},
    "tie_word_embeddings": true, "vocab_size": 8192})");
}

void expect_config_error(const json& j, const std::string& fragment) {
  try {
    LlamaConfig::from_json(j, "cfg.json");
    FAIL() << "accepted: " << j.dump();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
  }
}

TEST(LlamaConfig, ReadsLlama32Style) {
  const LlamaConfig c = LlamaConfig::from_json(llama_3_2_1b_json(), "cfg.json");
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.intermediate_size, 8192);
  EXPECT_EQ(c.num_hidden_layers, 16);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.q_dim(), 2048);
  EXPECT_EQ(c.kv_dim(), 512);
}

TEST(LlamaConfig, ReadsTransformers5Style) {
  const LlamaConfig c = LlamaConfig::from_json(transformers5_json(), "cfg.json");
  EXPECT_EQ(c.hidden_size, 512);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, 4.0);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(c.dtype, "bfloat16");
}

TEST(LlamaConfig, ReadsTheSharedProxyModel) {
  QLLM_PROXY_OR_SKIP(dir);
  const LlamaConfig c = LlamaConfig::load(dir);
  EXPECT_EQ(c.num_hidden_layers, 6);
  EXPECT_EQ(c.rope.type, "llama3");
}

TEST(LlamaConfig, DefaultsAndScalarEos) {
  json j = llama_3_2_1b_json();
  j.erase("head_dim");
  j.erase("num_key_value_heads");
  j["eos_token_id"] = 128009;
  j["rope_scaling"] = nullptr;
  j.erase("rope_theta");
  j.erase("tie_word_embeddings");
  const LlamaConfig c = LlamaConfig::from_json(j, "cfg.json");
  EXPECT_EQ(c.head_dim, 2048 / 32);
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{128009});
  EXPECT_EQ(c.rope.type, "default");
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);

  json v5 = transformers5_json();
  v5["rope_parameters"] = {{"rope_theta", 10000.0}, {"rope_type", "default"}};
  EXPECT_EQ(LlamaConfig::from_json(v5, "cfg.json").rope.type, "default");
  EXPECT_DOUBLE_EQ(LlamaConfig::from_json(v5, "cfg.json").rope_theta, 10000.0);
}

TEST(LlamaConfig, HfJsonRoundTrip) {
  for (const LlamaConfig& c : {LlamaConfig::llama_3_2_1b(), LlamaConfig::tiny()}) {
    const LlamaConfig back = LlamaConfig::from_json(c.to_hf_json(), "round trip");
    EXPECT_EQ(back.describe(), c.describe());
    EXPECT_EQ(back.eos_token_ids, c.eos_token_ids);
    EXPECT_EQ(back.bos_token_id, c.bos_token_id);
  }
  // Exactly the real model's config.json, less the writer's version.
  json expected = llama_3_2_1b_json();
  expected.erase("transformers_version");
  EXPECT_EQ(LlamaConfig::llama_3_2_1b().to_hf_json(), expected);
}

TEST(LlamaConfig, RejectsUnsupportedAndBrokenConfigs) {
  json j = llama_3_2_1b_json();
  j["rope_scaling"]["rope_type"] = "yarn";
  expect_config_error(j, "unsupported rope_type 'yarn'");
  j = transformers5_json();
  j["rope_parameters"]["rope_type"] = "dynamic";
  expect_config_error(j, "unsupported rope_type 'dynamic'");
  j = llama_3_2_1b_json();
  j["attention_bias"] = true;
  expect_config_error(j, "attention_bias");
  j = llama_3_2_1b_json();
  j["mlp_bias"] = true;
  expect_config_error(j, "mlp_bias");
  j = llama_3_2_1b_json();
  j["architectures"] = {"MistralForCausalLM"};
  expect_config_error(j, "unsupported architectures");
  j = llama_3_2_1b_json();
  j["hidden_act"] = "gelu";
  expect_config_error(j, "unsupported hidden_act 'gelu'");
  j = llama_3_2_1b_json();
  j.erase("hidden_size");
  expect_config_error(j, "missing field 'hidden_size'");
  j = llama_3_2_1b_json();
  j["num_hidden_layers"] = "16";
  expect_config_error(j, "'num_hidden_layers' must be an integer");
  j = llama_3_2_1b_json();
  j["num_key_value_heads"] = 5;
  expect_config_error(j, "not a multiple of num_key_value_heads");
  j = llama_3_2_1b_json();
  j["eos_token_id"] = {128001, "x"};
  expect_config_error(j, "eos_token_id");
  j = llama_3_2_1b_json();
  j["eos_token_id"] = 999999;
  expect_config_error(j, "outside the vocabulary");
  j = llama_3_2_1b_json();
  j["rope_scaling"].erase("factor");
  expect_config_error(j, "missing field 'factor'");
  j = llama_3_2_1b_json();
  j["rope_scaling"]["high_freq_factor"] = 0.5;
  expect_config_error(j, "high_freq_factor");
  j = llama_3_2_1b_json();
  j["head_dim"] = 63;
  expect_config_error(j, "must be even");
  j = llama_3_2_1b_json();
  j["vocab_size"] = 0;
  expect_config_error(j, "must be positive");
  expect_config_error(json::array(), "must be a JSON object");
}

TEST(LlamaConfig, LoadErrorsNameTheFile) {
  testing::TempDir dir;
  EXPECT_THROW(LlamaConfig::load(dir.str()), Error);
  std::ofstream(dir.file("config.json")) << "{\"hidden_size\": ";
  try {
    LlamaConfig::load(dir.str());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json: not valid JSON"), std::string::npos) << e.what();
  }
}

// Independent computation of Llama 3's scaled inverse frequency (GUIDE section 1), in long double.
long double expected_llama3(int i, int dim, long double theta, long double factor, long double low,
                            long double high, long double original) {
  const long double f = 1.0L / std::pow(theta, static_cast<long double>(2 * i) / dim);
  const long double w = 2.0L * std::numbers::pi_v<long double> / f;
  if (w < original / high) return f;
  if (w > original / low) return f / factor;
  const long double smooth = (original / w - low) / (high - low);
  return (1.0L - smooth) * f / factor + smooth * f;
}

TEST(LlamaConfig, Llama3InverseFrequencies) {
  const LlamaConfig c = LlamaConfig::llama_3_2_1b();
  const std::vector<double> inv = rope_inverse_frequencies(c);
  ASSERT_EQ(inv.size(), 32u);
  int kept = 0, divided = 0, smoothed = 0;
  for (int i = 0; i < 32; ++i) {
    const long double e = expected_llama3(i, 64, 500000.0L, 32.0L, 1.0L, 4.0L, 8192.0L);
    EXPECT_NEAR(inv[i] / static_cast<double>(e), 1.0, 1e-12) << "i = " << i;
    const double plain = std::pow(500000.0, -2.0 * i / 64.0);
    if (std::abs(inv[i] / plain - 1.0) < 1e-12)
      ++kept;
    else if (std::abs(inv[i] * 32.0 / plain - 1.0) < 1e-12)
      ++divided;
    else
      ++smoothed;
  }
  // All three regimes occur for Llama-3.2-1B's head_dim 64.
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(smoothed, 0);
  // Spot values: i = 0 keeps 1.0; the lowest frequency is theta^(-62/64) / 32.
  EXPECT_DOUBLE_EQ(inv[0], 1.0);
  EXPECT_NEAR(inv[31], std::pow(500000.0, -62.0 / 64.0) / 32.0, 1e-18);

  LlamaConfig plain = c;
  plain.rope.type = "default";
  const std::vector<double> d = rope_inverse_frequencies(plain);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(d[i], std::pow(500000.0, -2.0 * i / 64.0), 1e-15);
}

}  // namespace
}  // namespace qllm
