// Random-weight checkpoints in exactly the Hugging Face layout (config.json, bf16 model.safetensors,
// generation_config.json, tokenizer files), loadable by LlamaForCausalLM.from_pretrained. They stand in
// for the real Llama-3.2-1B-Instruct weights, which cannot be downloaded here, for speed and memory work,
// and give tests a tiny model with the real architecture.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "model/llama_config.h"

namespace qllm {

struct SynthOptions {
  std::string preset = "tiny";  // "llama-3.2-1b" (GUIDE section 1), "tiny" (2 layers, hidden 64) or "small"
  std::string out_dir{};
  uint64_t seed = 0;
  std::string tokenizer_dir{};  // copy tokenizer files from here; empty: generate a byte-level BPE tokenizer
  bool verbose = false;         // progress on stderr
  bool force = false;           // write into a non-empty out_dir (refused otherwise: it may hold a model)
};

// Writes the checkpoint and returns its config. Weights ~ N(0, 0.02^2), norms 1.0, embeddings tied.
LlamaConfig write_synthetic_checkpoint(const SynthOptions& options);

// A valid byte-level BPE tokenizer.json: the 256 byte tokens (ids 0..255, GPT-2 byte-to-unicode
// stand-ins), merged byte pairs and triples filling ids 256..special_offset-1 (none for the tiny model),
// and `special_count` Llama 3 special tokens from id `special_offset` on
// (<|begin_of_text|>, <|end_of_text|>, ..., <|start_header_id|>, <|end_header_id|>, <|eom_id|>, <|eot_id|>,
// <|python_tag|>, then reserved ones), with a TemplateProcessing post-processor that adds BOS.
nlohmann::json byte_level_tokenizer_json(int64_t special_offset, int64_t special_count);

// The name of Llama 3's special token at `index` of its 256 (index 0 = <|begin_of_text|>).
std::string llama3_special_token(int64_t index);

}  // namespace qllm
