// read_gguf_vocab: the tokenizer.ggml.* metadata of a GGUF file into a GgufVocab (gguf_vocab.h).
#include "tokenizer/gguf_vocab.h"

#include "core/gguf.h"
#include "qllm/error.h"

namespace qllm {

GgufVocab read_gguf_vocab(const GgufFile& file) {
  auto key = [](std::string_view name) { return "tokenizer.ggml." + std::string(name); };
  auto optional_id = [&](std::string_view name) -> std::optional<uint32_t> {
    if (!file.contains(key(name))) return std::nullopt;
    return file.get_u32(key(name));
  };
  auto optional_flag = [&](std::string_view name) -> std::optional<bool> {
    if (!file.contains(key(name))) return std::nullopt;
    return file.get_bool(key(name));
  };

  GgufVocab vocab;
  vocab.origin = file.name();
  vocab.model = file.get_string(key("model"));
  if (file.contains(key("pre"))) vocab.pre = file.get_string(key("pre"));
  vocab.tokens = file.get_string_array(key("tokens"));
  if (file.contains(key("scores"))) vocab.scores = file.get_f32_array(key("scores"));
  if (file.contains(key("token_type"))) vocab.token_type = file.get_i32_array(key("token_type"));
  // llama.cpp refuses a gpt2 vocabulary without merges; an absent key would read as "no merges" here.
  QLLM_CHECK(vocab.model != "gpt2" || file.contains(key("merges")),
             "{}: metadata key '{}' is missing (a \"gpt2\" vocabulary needs its merges)", file.name(),
             key("merges"));
  if (file.contains(key("merges"))) vocab.merges = file.get_string_array(key("merges"));
  vocab.bos_id = optional_id("bos_token_id");
  vocab.eos_id = optional_id("eos_token_id");
  vocab.unk_id = optional_id("unknown_token_id");
  vocab.pad_id = optional_id("padding_token_id");
  vocab.add_bos_token = optional_flag("add_bos_token");
  vocab.add_eos_token = optional_flag("add_eos_token");
  vocab.add_space_prefix = optional_flag("add_space_prefix");
  return vocab;
}

}  // namespace qllm
