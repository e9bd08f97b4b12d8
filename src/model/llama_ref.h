// The CPU reference forward pass of Llama 3: f32 math on bf16/f16/f32 weights, read like llama2.c's
// run.c. It is the spec the GPU engine is tested against, so it favours plain loops over speed; the
// matmuls and attention still run on every core with OpenMP.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "model/kv_cache.h"
#include "model/llama_config.h"
#include "model/llama_weights.h"

namespace qllm {

class LlamaRef final : public CausalLm {
 public:
  LlamaRef(LlamaConfig config, LlamaWeights weights);

  // Reads config.json and the safetensors weights of a Hugging Face checkpoint directory.
  static std::unique_ptr<LlamaRef> load(const std::string& dir, bool verbose = false);

  const LlamaConfig& config() const override { return config_; }
  const LlamaWeights& weights() const { return weights_; }
  std::string device_name() const override;

  void allocate_cache(int slots, int64_t capacity) override;
  int64_t cache_capacity() const override { return cache_.capacity(); }
  int cache_slots() const override { return cache_.slots(); }
  const KvCache& cache() const { return cache_; }

  std::vector<float> forward(std::span<const SequenceInput> batch, bool last_only) override;

 private:
  struct Activations;

  void validate_batch(std::span<const SequenceInput> batch) const;
  void attention_block(int64_t layer, Activations& a);
  void mlp_block(int64_t layer, Activations& a);

  LlamaConfig config_;
  LlamaWeights weights_;
  std::vector<float> inv_freq_;  // [head_dim / 2] rotary inverse frequencies (llama3 scaling applied)
  KvCache cache_;
};

}  // namespace qllm
