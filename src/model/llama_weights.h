// The tensors of a Llama model on the host, checked by name and shape against its config: from a Hugging Face
// checkpoint (safetensors; matrices stay where the mapping put them, bf16/f16/f32, no copy) or a GGUF file
// (model/gguf_model.h). The small norm vectors are read to f32. The GPU engine and the CPU reference both
// build their weights from these.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "model/llama_config.h"
#include "model/safetensors.h"
#include "qllm/dtype.h"
#include "qllm/quant.h"

namespace qllm {

// A row-major [rows, cols] matrix of bf16, f16 or f32 elements (a Linear weight: [out, in]).
struct WeightMatrix {
  std::string name;
  DType dtype = DType::F32;
  const void* data = nullptr;  // rows * cols elements, aligned to the element size
  int64_t rows = 0;
  int64_t cols = 0;
  // Pre-quantized (a quantized checkpoint, or a quantizer that ran on the host model): the INT4 weights as
  // stored. `data` is then null and `dtype` F32: rows read as their exact reconstruction. Shared, because a
  // tied lm_head is a copy of the embedding's WeightMatrix.
  std::shared_ptr<const Int4Matrix> int4;

  bool quantized() const { return int4 != nullptr; }
  // Converts one row to f32: out[cols].
  void row_to_f32(int64_t row, float* out) const;
};

struct LayerWeights {
  std::vector<float> attn_norm;  // [hidden]  input_layernorm
  WeightMatrix wq;               // [heads * head_dim, hidden]
  WeightMatrix wk;               // [kv_heads * head_dim, hidden]
  WeightMatrix wv;               // [kv_heads * head_dim, hidden]
  WeightMatrix wo;               // [hidden, heads * head_dim]
  std::vector<float> ffn_norm;   // [hidden]  post_attention_layernorm
  WeightMatrix w_gate;           // [intermediate, hidden]
  WeightMatrix w_up;             // [intermediate, hidden]
  WeightMatrix w_down;           // [hidden, intermediate]
};

class LlamaWeights {
 public:
  // Opens the checkpoint in `dir` (single file or sharded) and checks every tensor against `config`.
  // Prints progress to stderr when `verbose`.
  static LlamaWeights load(const std::string& dir, const LlamaConfig& config, bool verbose = false);

  WeightMatrix embed;                // [vocab, hidden]  model.embed_tokens.weight
  std::vector<LayerWeights> layers;  // [num_hidden_layers]
  std::vector<float> final_norm;     // [hidden]  model.norm.weight
  WeightMatrix lm_head;              // [vocab, hidden]  lm_head.weight, or embed when tied

  DType matrix_dtype() const { return embed.dtype; }

  // A linear weight the engines quantize: the seven of each layer, the lm_head and, untied, the embedding
  // (both take ModelQuant::lm_head's mode: `head`). A tied model lists its embedding once, as the lm_head.
  struct Linear {
    WeightMatrix* matrix = nullptr;
    bool head = false;
  };
  std::vector<Linear> linears();
  // Replaces the weight named `name` (the checkpoint's tensor name; a tied lm_head and the embedding
  // together) by pre-quantized INT4 of the same shape: qllm::Error for an unknown name or another shape.
  void set_int4(const std::string& name, Int4Matrix matrix);
  bool any_int4() const;

 private:
  friend LlamaWeights llama_weights_from_gguf(std::shared_ptr<const GgufFile>, const LlamaConfig&, bool);
  friend class QuantizedCheckpointReader;

  SafetensorsCheckpoint checkpoint_;            // owns the mappings the matrices point into
  std::shared_ptr<const GgufFile> gguf_;        // or a GGUF file's mapping (model/gguf_model.h)
  std::vector<std::vector<std::byte>> copies_;  // matrices copied to align them, or dequantized to f32
};

}  // namespace qllm
