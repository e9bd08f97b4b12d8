// The loaded tokenizer behind qllm::Tokenizer's pimpl: immutable after load, shared by copies and threads.
// Built from a tokenizer.json (tokenizer.cpp) or from a GGUF vocabulary (gguf_tokenizer.cpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokenizer_json.h"

namespace qllm {
struct GgufVocab;
}

namespace qllm::detail {

// Built from the parsed spec without redoing its work: the vocabulary's id and string indexes are taken
// over from spec.vocab, and each token's bytes are decoded once, for decode and for BPE alike.
struct TokenizerModel {
  explicit TokenizerModel(TokenizerSpec spec);
  explicit TokenizerModel(const GgufVocab& vocab);

  std::filesystem::path file;            // tokenizer.json or the GGUF vocabulary's origin, for messages
  std::vector<std::string> text_of_id;   // [vocab_size] vocab string ("Ġthe") or added token content
  std::vector<std::string> bytes_of_id;  // [vocab_size] what decode writes for the id
  std::vector<uint8_t> assigned;         // [vocab_size] 0 for ids no token has
  std::vector<uint8_t> special;          // [vocab_size] skipped by decode(skip_special_tokens)
  StringMap<int32_t> id_of_text;         // model vocabulary and added tokens
  AddedTokenMatcher added_tokens;
  std::vector<RegexSplitter> splitters;  // byte-level BPE: applied in order, each to the pieces of the last
  std::optional<BpeModel> bpe;           // byte-level BPE (tokenizer.json, GGUF "gpt2")
  std::optional<SpmModel> spm;           // SentencePiece-style BPE (GGUF "llama")
  bool space_prefix = false;        // spm: a space before the text at the start and after each special token
  std::vector<int32_t> prefix_ids;  // added with special tokens: BOS ...
  std::vector<int32_t> suffix_ids;  // ... and EOS
  std::optional<int32_t> bos;

  // Throws qllm::Error naming the id when no token has it.
  void check_id(int32_t id) const;

  // Sets `pieces` to the byte-level BPE pre-tokens of `text` (valid UTF-8): the last splitter's pieces.
  void pre_tokenize(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  // The bytes of the model.vocab tokens (byte_level::decode_token), decoded once.
  struct DecodedVocab {
    std::vector<std::string> bytes_of_id;  // [model.vocab ids]
    std::vector<int32_t> byte_level_ids;   // tokens made only of byte-table characters
  };
  static DecodedVocab decode_vocab(const Vocab& vocab);
  TokenizerModel(TokenizerSpec&& spec, DecodedVocab decoded);
};

}  // namespace qllm::detail
