// The GPU engine of Llama: the Model (weights on the GPU, every linear layer a QuantLinear in the chosen
// quantization) and its Context (a stream, the paged KV cache, activation workspaces, CUDA graphs of the
// decode step). The CPU reference (llama_ref.h) is its spec; tests run both through ForwardInvariants and
// compare their logits.
//
// One forward pass over T tokens of a batch of sequences (rows grouped by sequence):
//   residual f32 [T, hidden] = embedding rows of the ids
//   per layer:  x = rmsnorm(residual += delta)        (delta: the previous block's output; none at first)
//               qkv = x Wqkvᵀ                          one GEMM, [T, (Hq + 2 Hkv) D]
//               q, pages <- rope(qkv), k, v            k and v stored at each token's slot of the paged cache
//               a = attention(q, pages)                prefill: tensor-core tiles; decode: split over keys
//               delta = a Woᵀ;  x = rmsnorm(residual += delta)
//               gu = x Wgate_upᵀ (one GEMM, [T, 2I]);  h = silu(g) u;  delta = h Wdownᵀ
//   x = final_norm(residual += delta);  logits = x Wlm_headᵀ for the rows asked for
// Activations are 16-bit (bf16, or f16 for f16 weights), the residual f32, math f32. At decode sizes the
// INT4 GEMMs can compute their input themselves (kernels/gemm/x_prologue.h; up to the plan rule's token
// bound, which is 0 until measured): each norm folded into the GEMM after it (the residual then alternates
// between two buffers) and SwiGLU into the down projection.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernels/attention/attention_cuda.h"
#include "kernels/elementwise/embedding.h"
#include "kernels/gemm/quant_linear.h"
#include "kernels/runtime/cuda_utils.h"
#include "model/causal_lm.h"
#include "model/kv_page_allocator.h"
#include "model/llama_config.h"
#include "model/llama_weights.h"
#include "quant/quant_mode.h"

namespace qllm {

class LlamaCudaModel final : public Model {
 public:
  // Uploads and quantizes `weights` layer by layer on the current GPU (peak GPU memory: the quantized model
  // plus one layer's staging). Prints progress to stderr when `verbose`.
  LlamaCudaModel(LlamaConfig config, const LlamaWeights& weights, const ModelQuant& quant, bool verbose);

  const LlamaConfig& config() const override { return config_; }
  std::string device_name() const override { return device_name_; }
  std::string quantization() const override { return quant_.name(); }
  uint64_t weight_bytes() const override;
  std::unique_ptr<Context> new_context(const ContextOptions& options) const override;

  struct Layer {
    DeviceBuffer<float> attn_norm;  // [hidden]
    DeviceBuffer<float> ffn_norm;   // [hidden]
    QuantLinear qkv;                // [(Hq + 2 Hkv) D, hidden]: q rows, then k, then v
    QuantLinear o;                  // [hidden, Hq D]
    QuantLinear gate_up;            // [2 I, hidden]: gate rows, then up
    QuantLinear down;               // [hidden, I]
  };

  DType activation_dtype() const { return activation_; }
  // Whether a layer runs LLM.int8() (whose device status each pass checks).
  bool uses_int8() const {
    return quant_.linear.kind == QuantMode::Kind::Int8 || quant_.lm_head.kind == QuantMode::Kind::Int8;
  }
  const std::vector<Layer>& layers() const { return layers_; }
  const QuantLinear& lm_head() const { return *lm_head_; }
  // The table the embedding gather reads: the lm_head's storage when tied, else the embedding's own.
  EmbeddingTable embedding_table() const;
  const float* final_norm() const { return final_norm_.data(); }
  const float* inv_freq() const { return inv_freq_.data(); }

 private:
  LlamaConfig config_;
  ModelQuant quant_;
  DType activation_;
  std::string device_name_;
  std::vector<Layer> layers_;
  std::optional<QuantLinear> lm_head_;
  std::optional<QuantLinear> embed_;  // untied models only
  DeviceBuffer<float> final_norm_;    // [hidden]
  DeviceBuffer<float> inv_freq_;      // [head_dim / 2] rotary inverse frequencies (scaling applied)
};

class LlamaCudaContext final : public Context {
 public:
  LlamaCudaContext(const LlamaCudaModel& model, const ContextOptions& options);
  ~LlamaCudaContext() override;

  const Model& model() const override { return model_; }
  int max_sequences() const override { return max_sequences_; }
  int64_t max_positions() const override { return max_positions_; }
  int64_t max_batch_tokens() const override { return max_batch_tokens_; }
  int64_t length(int seq) const override;
  void truncate(int seq, int64_t length) override;
  void forward(std::span<const SequenceInput> batch, const ForwardOutputs& outputs) override;

  uint64_t memory_bytes() const override;
  const KvPageAllocator& pages() const { return pages_; }
  cudaStream_t stream() const { return stream_; }

 private:
  struct Workspace;
  struct BatchLayout;

  void allocate_workspace();
  // Writes the batch description (ids, positions, slots, sequence starts and lengths, block table, targets)
  // into the pinned staging area; upload_batch() copies it to the device in one transfer.
  BatchLayout stage_batch(std::span<const SequenceInput> batch, std::span<const int32_t> targets);
  void upload_batch();
  // The layers, from the ids on the device to the final norm's output in the workspace (`final_norm`), or
  // to the last block's delta (the caller folds the final norm into lm_head: normed_forward). Returns the
  // residual stream's current buffer.
  float* run_layers(const BatchLayout& layout, bool final_norm = true);
  // out = rmsnorm(residual += delta) @ linear's W'^T, the norm folded into the GEMM where the layer's kernel
  // can (QuantLinear::forward_fused); a folded norm with a delta leaves the residual in the other buffer,
  // which `residual` names after the call.
  void normed_forward(const QuantLinear& linear, const float* norm_weight, const void* delta, void* out,
                      int64_t tokens, float*& residual);
  // The RMSNorm kernel: x (workspace) = rmsnorm(residual += delta) with `weight`, in place on `residual`.
  void launch_norm(int64_t tokens, float* residual, const void* delta, const float* weight);
  // The decode step of `layout.num_seqs` sequences (layers and lm_head) as a CUDA graph, captured on first
  // use for its bucket of sequences.
  void run_decode_graph(const BatchLayout& layout);
  // lm_head on each sequence's last row, into the logits workspace rows 0..num_seqs-1.
  void last_logits(const BatchLayout& layout);
  // Draws one token per row of the logits workspace on the device (copied back by finish_pass()).
  void sample(std::span<const TokenSampling> sampling);
  void sampled_logprobs(int64_t rows, const ForwardOutputs& outputs);  // after sample(), when asked
  // lm_head on every row, in chunks: negative log-likelihoods and/or logits to the host.
  void every_row_outputs(int64_t tokens, const ForwardOutputs& outputs);
  void copy_logits_to_host(int64_t rows, std::span<float> out);
  // Waits for the pass and turns the device's error flags (bad ids, NaN logits, int8 status) into errors.
  void finish_pass();

  const LlamaCudaModel& model_;
  const LlamaConfig& config_;
  int max_sequences_;
  int64_t max_positions_;
  int64_t max_batch_tokens_;
  std::vector<int64_t> lengths_;  // [max_sequences] positions each sequence holds
  cudaStream_t stream_ = nullptr;
  KvPageAllocator pages_;
  std::vector<DeviceBuffer<uint16_t>> k_pools_;  // [layers] T [num_pages, Hkv, page_size, D]
  std::vector<DeviceBuffer<uint16_t>> v_pools_;
  PagedAttention attention_;
  GemmExecutor gemm_;  // the GEMM workspaces of this context's stream
  std::unique_ptr<Workspace> ws_;
};

}  // namespace qllm
