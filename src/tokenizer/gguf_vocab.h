// The tokenizer of a GGUF file as plain data: what its tokenizer.ggml.* metadata holds, before any
// interpretation, and read_gguf_vocab() that reads it from a GGUF file. Tokenizer::from_gguf_vocab() checks
// it and builds a tokenizer that gives the ids of llama.cpp's llama_tokenize (with parse_special: control,
// user-defined and unknown tokens written in the text are matched as those tokens).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qllm {

class GgufFile;

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class GgufTokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,      // BOS, EOS, chat markers: matched in text, skipped by decode(skip_special_tokens)
  UserDefined = 4,  // matched in text, always decoded
  Unused = 5,
  Byte = 6,  // "<0xXX>" byte fallback tokens of "llama" vocabularies
};

struct GgufVocab {
  std::string origin;  // where the vocabulary comes from (the .gguf path), for error messages
  std::string model;   // tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece BPE)
  std::string pre;     // tokenizer.ggml.pre: the pre-tokenizer of "gpt2" ("llama-bpe", "smollm", "gpt-2")
  std::vector<std::string> tokens;    // tokenizer.ggml.tokens [n]: the id of a token is its index
  std::vector<float> scores;          // tokenizer.ggml.scores [n] ("llama": merge priority), or empty
  std::vector<int32_t> token_type;    // tokenizer.ggml.token_type [n] (GgufTokenType), or empty: all normal
  std::vector<std::string> merges;    // tokenizer.ggml.merges ("gpt2"): "left right", in rank order
  std::optional<uint32_t> bos_id;     // tokenizer.ggml.bos_token_id
  std::optional<uint32_t> eos_id;     // tokenizer.ggml.eos_token_id
  std::optional<uint32_t> unk_id;     // tokenizer.ggml.unknown_token_id
  std::optional<uint32_t> pad_id;     // tokenizer.ggml.padding_token_id
  std::optional<bool> add_bos_token;  // tokenizer.ggml.add_bos_token; absent: llama.cpp's default
  std::optional<bool> add_eos_token;  // tokenizer.ggml.add_eos_token; absent: false
  std::optional<bool> add_space_prefix;  // tokenizer.ggml.add_space_prefix ("llama"); absent: true
};

// The tokenizer.ggml.* keys of `file`. Throws qllm::Error naming the file and the key when one is missing
// (model, tokens; merges of a "gpt2" vocabulary) or has another type. The values are checked by
// Tokenizer::from_gguf_vocab, not here.
GgufVocab read_gguf_vocab(const GgufFile& file);

}  // namespace qllm
