// SentencePiece-style BPE of GGUF "llama" vocabularies, as llama.cpp's llm_tokenizer_spm does it: spaces
// become U+2581 ("▁"), the text starts as one symbol per UTF-8 character, and the adjacent pair whose
// concatenation is the token with the highest score merges first (leftmost on ties) until no pair's
// concatenation is a token. A character that is not a token and never merged becomes its bytes'
// <0xXX> tokens (byte fallback). The merge loop is BPE's (merge_by_rank) with ranks ordered by score.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer_json.h"

namespace qllm::detail {

class SpmModel {
 public:
  // `text_of_id` and `scores` have one entry per token. `byte_ids[b]` is the token of byte b (<0xXX>, or
  // the one-byte string), -1 when there is none; then a character needing it becomes `unk_id` (or is
  // dropped when unk_id is -1), where llama.cpp would stop with an exception.
  SpmModel(std::span<const std::string> text_of_id, std::span<const float> scores,
           const std::array<int32_t, 256>& byte_ids, int32_t unk_id);

  // Appends the ids of `text` (valid UTF-8; a segment between special tokens). `space_prefix`: a space
  // goes before the text first (llama.cpp's add_space_prefix at the start and after a special token).
  void encode(std::string_view text, bool space_prefix, std::vector<int32_t>& out) const;

 private:
  std::optional<MergeTarget> find_merge(std::string_view left, std::string_view right,
                                        std::string& scratch) const;

  StringMap<int32_t> id_of_text_;
  std::vector<std::string> text_of_id_;
  std::vector<int32_t> rank_of_id_;  // position of the token's score among the distinct scores, highest first
  std::array<int32_t, 256> byte_ids_{};
  int32_t unk_id_ = -1;
};

}  // namespace qllm::detail
