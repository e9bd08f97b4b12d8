// The loaded tokenizer behind qllm::Tokenizer's pimpl: immutable after load, shared by copies and threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_json.h"

namespace qllm::detail {

struct TokenizerModel {
  explicit TokenizerModel(const TokenizerSpec& spec);

  std::filesystem::path file;            // tokenizer.json, for messages
  std::vector<std::string> text_of_id;   // [vocab_size] vocab string ("Ġthe") or added token content
  std::vector<std::string> bytes_of_id;  // [vocab_size] what decode writes for the id
  std::vector<uint8_t> assigned;         // [vocab_size] 0 for ids no token has
  std::vector<uint8_t> special;          // [vocab_size] added tokens marked special
  std::unordered_map<std::string, int32_t> id_of_text;  // model vocabulary and added tokens
  AddedTokenMatcher added_tokens;
  RegexSplitter splitter;
  BpeModel bpe;
  std::vector<int32_t> prefix_ids;  // post_processor TemplateProcessing, applied with special tokens
  std::vector<int32_t> suffix_ids;
  std::optional<int32_t> bos;
  std::optional<int32_t> eos;

  // Throws qllm::Error naming the id when no token has it.
  void check_id(int32_t id) const;
};

}  // namespace qllm::detail
