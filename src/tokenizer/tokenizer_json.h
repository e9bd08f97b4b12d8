// tokenizer.json (Hugging Face `tokenizers` serialization), read and validated into plain data. Only the
// configuration of Llama 3 style byte-level BPE tokenizers is accepted; anything else is refused with a
// qllm::Error that names the file and the field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace qllm::detail {

// The whole file; qllm::Error naming it when it cannot be read.
std::string read_file(const std::filesystem::path& file);

// The file parsed as JSON; qllm::Error naming it and the position of a syntax error.
nlohmann::json read_json_file(const std::filesystem::path& file);

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool lstrip = false;      // the match also takes the whitespace before it
  bool rstrip = false;      // ... and after it
  bool normalized = false;  // matched after normalization (no normalizer is supported: same text)
  bool special = false;     // skipped by decode(skip_special_tokens = true)
};

// One BPE merge: the pair of token ids and the id of their concatenation. Rank = index in the list.
struct MergeRule {
  int32_t left = 0;
  int32_t right = 0;
  int32_t merged = 0;
};

struct TokenizerSpec {
  std::filesystem::path file;
  std::vector<std::pair<std::string, int32_t>> vocab;  // model.vocab: byte-level strings ("Ġthe")
  std::vector<MergeRule> merges;                       // model.merges, in rank order
  bool ignore_merges = false;  // a pre-token that is itself in the vocabulary is not merged
  int32_t unk_id = -1;         // model.unk_token, -1 when null (unknown characters are then dropped)
  bool fuse_unk = false;
  std::vector<AddedToken> added_tokens;
  std::string split_pattern;        // the Split pre-tokenizer's regex, as written
  std::vector<int32_t> prefix_ids;  // TemplateProcessing "single": ids before the text (BOS) ...
  std::vector<int32_t> suffix_ids;  // ... and after it
};

TokenizerSpec parse_tokenizer_json(const std::filesystem::path& file);

}  // namespace qllm::detail
