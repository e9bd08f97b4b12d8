// tokenizer.json (Hugging Face `tokenizers` serialization), read and validated into plain data. Only the
// configuration of Llama 3 style byte-level BPE tokenizers is accepted; anything else is refused with a
// qllm::Error that names the file and the field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace qllm::detail {

// Hashing for maps keyed by std::string that are searched with a std::string_view, without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const noexcept { return std::hash<std::string_view>{}(text); }
};
template <typename Value>
using StringMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

// model.vocab, built once while parsing and taken over by the loaded tokenizer (not rebuilt there).
struct Vocab {
  std::vector<std::string> text_of_id;  // [largest id + 1] byte-level string ("Ġthe"); "" where no token
  std::vector<uint8_t> assigned;        // [largest id + 1] 1 for the ids a token has
  StringMap<int32_t> id_of_text;        // the same tokens, by string
};

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
  Vocab vocab;                    // model.vocab
  std::vector<MergeRule> merges;  // model.merges, in rank order
  bool ignore_merges = false;     // a pre-token that is itself in the vocabulary is not merged
  int32_t unk_id = -1;            // model.unk_token, -1 when null (unknown characters are then dropped)
  bool fuse_unk = false;
  std::vector<AddedToken> added_tokens;
  std::string split_pattern;        // the Split pre-tokenizer's regex, as written
  std::vector<int32_t> prefix_ids;  // TemplateProcessing "single": ids before the text (BOS) ...
  std::vector<int32_t> suffix_ids;  // ... and after it
};

TokenizerSpec parse_tokenizer_json(const std::filesystem::path& file);

}  // namespace qllm::detail
