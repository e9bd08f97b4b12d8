// Llama-architecture models from llama.cpp's GGUF files: the config from the `llama.*` metadata keys, the
// weights by llama.cpp's tensor names (token_embd, blk.N.attn_q, ..., output_norm, output or tied), with
// the row permutation llama.cpp's converter applies to Q and K (for its rope convention) undone, so that the
// forward pass is the Hugging Face one.
#pragma once

#include <memory>

#include "core/gguf.h"
#include "model/llama_config.h"
#include "model/llama_weights.h"

namespace qllm {

// general.architecture must be "llama". Sizes from llama.{block_count, embedding_length, feed_forward_length,
// attention.head_count(_kv), attention.key_length or rope.dimension_count, context_length, rope.freq_base,
// attention.layer_norm_rms_epsilon}, rope scaling from llama.rope.scaling.* or the rope_freqs tensor, the
// vocabulary size from tokenizer.ggml.tokens, BOS/EOS from tokenizer.ggml.*, tied when there is no
// output.weight.
LlamaConfig llama_config_from_gguf(const GgufFile& file);

// The tensors, checked by name, type and shape against `config`; every tensor of the file must be used.
// Q4_0 and Q4_1 weights stay INT4 (WeightMatrix::int4: groupwise g32 with f16 scales, symmetric or min
// offset, the file's values bit for bit) when all layer weights share that type (and, separately, the
// embedding and an untied output weight): `--quant auto` then runs them as stored (model/prequantized.h), f16
// activations. Otherwise F32 tensors are viewed in place and every other type is dequantized to f32 exactly
// as ggml does (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F16, BF16).
LlamaWeights llama_weights_from_gguf(std::shared_ptr<const GgufFile> file, const LlamaConfig& config,
                                     bool verbose = false);

// Whether llama_weights_from_gguf can keep tensors of this type as INT4 (Q4_0, Q4_1).
bool is_native_int4(GgmlType type);

// Hugging Face row r of a Q or K projection for `heads` heads of `head_dim` rows is GGUF row
// gguf_row_of_hf(r): llama.cpp's converter interleaves the two rotate-half halves of each head.
int64_t gguf_row_of_hf(int64_t r, int64_t head_dim);

}  // namespace qllm
