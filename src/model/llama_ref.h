// The CPU reference of Llama: f32 math on the weights as each quantization mode stores them (cpu_linear.h),
// read like llama2.c's run.c. It is the spec the GPU engine is tested against, so it favours plain loops over
// speed; the matmuls and attention still run on every core with OpenMP.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "model/cpu_linear.h"
#include "model/kv_cache.h"
#include "model/llama_config.h"
#include "model/llama_weights.h"
#include "quant/quant_mode.h"

namespace qllm {

struct LayerLinears {
  CpuLinear wq, wk, wv, wo;  // attention projections
  CpuLinear gate, up, down;  // SwiGLU MLP
};

class LlamaRefModel final : public Model {
 public:
  // Quantizes every linear layer of `weights` to `quant` with the CPU reference quantizers.
  LlamaRefModel(LlamaConfig config, LlamaWeights weights, const ModelQuant& quant = {});

  const LlamaConfig& config() const override { return config_; }
  std::string device_name() const override;
  std::string quantization() const override { return quant_.name(); }
  uint64_t weight_bytes() const override;
  std::unique_ptr<Context> new_context(const ContextOptions& options) const override;

  const LlamaWeights& weights() const { return weights_; }
  const LayerLinears& layer(int64_t i) const { return layers_[static_cast<size_t>(i)]; }
  const CpuLinear& lm_head() const { return lm_head_; }
  // Row `token` of the embedding table as the model stores it (a tied model: the lm_head's rows).
  void embed(int32_t token, float* out) const;
  std::span<const float> inv_freq() const { return inv_freq_; }

 private:
  LlamaConfig config_;
  LlamaWeights weights_;
  ModelQuant quant_;
  std::vector<LayerLinears> layers_;
  CpuLinear lm_head_;
  CpuLinear embed_;              // untied models only
  std::vector<float> inv_freq_;  // [head_dim / 2] rotary inverse frequencies (scaling applied)
};

class LlamaRefContext final : public Context {
 public:
  LlamaRefContext(const LlamaRefModel& model, const ContextOptions& options);

  const Model& model() const override { return model_; }
  int max_sequences() const override { return cache_.slots(); }
  int64_t max_positions() const override { return cache_.capacity(); }
  int64_t max_batch_tokens() const override { return max_batch_tokens_; }
  int64_t length(int seq) const override;
  void truncate(int seq, int64_t length) override;
  void forward(std::span<const SequenceInput> batch, const ForwardOutputs& outputs) override;

  const KvCache& cache() const { return cache_; }

 private:
  struct Activations;

  void attention_block(int64_t layer, Activations& a);
  void mlp_block(int64_t layer, Activations& a);
  // Final norm and lm_head for the rows asked for: logits [rows.size(), vocab].
  std::vector<float> logits_of(const Activations& a, std::span<const int64_t> rows) const;

  const LlamaRefModel& model_;
  const LlamaConfig& config_;
  KvCache cache_;
  int64_t max_batch_tokens_;
};

}  // namespace qllm
