// LlamaConfig: the hyper-parameters of a LlamaForCausalLM checkpoint, read from its config.json.
// Both key styles are read: real Llama 3.x files (`rope_theta` + `rope_scaling` + `torch_dtype`) and
// transformers 5 files (`rope_parameters` holding rope_theta and rope_type, + `dtype`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qllm {

// RoPE frequency scaling. "default": plain theta^(-2i/d); "linear": every frequency divided by `factor`;
// "llama3": Llama 3.1's long-context scaling; "factors": each frequency divided by its own factor
// (llama.cpp's GGUF files store Llama 3's scaling so, as the tensor rope_freqs.weight).
struct RopeScaling {
  std::string type = "default";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  std::vector<double> freq_factors;  // "factors": [head_dim / 2]
};

struct LlamaConfig {
  int64_t hidden_size = 0;        // model width (2048 for Llama-3.2-1B)
  int64_t intermediate_size = 0;  // SwiGLU hidden width
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads =
      0;                 // grouped-query attention: each KV head serves heads / kv_heads query heads
  int64_t head_dim = 0;  // defaults to hidden_size / num_attention_heads
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;  // Hugging Face's LlamaConfig default
  double rope_theta = 10000.0;
  RopeScaling rope;
  bool tie_word_embeddings = false;  // lm_head reuses model.embed_tokens.weight
  int64_t bos_token_id = -1;         // -1: none
  std::vector<int64_t> eos_token_ids;
  std::string dtype = "float32";  // torch_dtype / dtype as written ("bfloat16", ...)

  int64_t q_dim() const { return num_attention_heads * head_dim; }   // query projection width
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }  // key / value projection width

  // Parses and validates config.json text; `label` names the file in errors. Unsupported features
  // (other architectures, rope types, biases, activations) are errors, never silently ignored.
  static LlamaConfig from_json(const nlohmann::json& j, const std::string& label);
  // Reads DIR/config.json (or the file itself when given one).
  static LlamaConfig load(const std::string& path);

  // The config.json Hugging Face writes for this model (transformers 4.x key style: rope_theta,
  // rope_scaling, torch_dtype), loadable by LlamaForCausalLM.from_pretrained.
  nlohmann::json to_hf_json() const;

  // Known shapes: the real Llama-3.2-1B (GUIDE section 1), a 2-layer toy for tests (head_dim 16, CPU only)
  // and a 2-layer model with the GPU engine's head_dim 64, GQA ratio 3 and widths not multiples of 128.
  static LlamaConfig llama_3_2_1b();
  static LlamaConfig tiny();
  static LlamaConfig small();

  std::string describe() const;  // one line: layers, widths, heads, vocab, rope
};

// The head_dim / 2 rotary inverse frequencies, with the configured scaling applied (computed in double;
// the forward rotates pairs (x[j], x[j + head_dim / 2]) by position * inv_freq[j]).
std::vector<double> rope_inverse_frequencies(const LlamaConfig& config);

}  // namespace qllm
