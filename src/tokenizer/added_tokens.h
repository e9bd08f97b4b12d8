// Added (special) tokens are found in the raw text before anything else and are never split: the text
// between them goes through the pre-tokenizer and BPE. HF's order: leftmost-longest, as its Aho-Corasick
// automaton matches; tokens with normalized = false are matched first, then those with normalized = true
// in what is left (no normalizer is supported, so both see the same text). llama.cpp's order (GGUF
// tokenizers): one token after the other, longest first, each splitting every stretch of text left.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer_json.h"

namespace qllm::detail {

// A stretch of the input: either an added token (id >= 0) or text to pre-tokenize (id = -1).
struct Segment {
  std::string_view text;
  int32_t id = -1;
};

enum class AddedTokenOrder {
  LeftmostLongest,    // HF
  LongestTokenFirst,  // llama.cpp (tokenizer_st_partition); lstrip, rstrip and normalized are not read
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;  // matches nothing
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens,
                             AddedTokenOrder order = AddedTokenOrder::LeftmostLongest);

  // Splits valid UTF-8 `text` into segments that cover it in order.
  std::vector<Segment> split(std::string_view text) const;

 private:
  // Tokens of one matching pass (indices into tokens_), grouped by first byte and longest first, so that
  // the first candidate that matches at a position is the longest one.
  struct Pass {
    std::vector<std::vector<uint32_t>> by_first_byte = std::vector<std::vector<uint32_t>>(256);
    bool empty = true;
  };

  void split_pass(const Pass& pass, std::string_view text, std::vector<Segment>& out) const;
  std::vector<Segment> split_longest_token_first(std::string_view text) const;

  std::vector<AddedToken> tokens_;
  AddedTokenOrder order_ = AddedTokenOrder::LeftmostLongest;
  Pass raw_pass_;                        // LeftmostLongest: normalized = false
  Pass normalized_pass_;                 // LeftmostLongest: normalized = true
  std::vector<uint32_t> longest_first_;  // LongestTokenFirst: indices into tokens_ in matching order
};

}  // namespace qllm::detail
