// Decoding: ids -> the bytes their tokens stand for (GPT-2 byte table reversed, "▁" as a space and <0xXX>
// as its byte for SentencePiece vocabularies; special tokens as written), then UTF-8 with invalid
// sequences replaced, as HF's ByteLevel decoder (String::from_utf8_lossy) does.
#include "core/utf8.h"
#include "qllm/tokenizer.h"
#include "tokenizer/tokenizer_model.h"

namespace qllm {

namespace {

// Appends the bytes of `id` unless it is a special token being skipped. `at_start`: nothing was written
// yet; a SentencePiece vocabulary's space prefix (the first byte written, when a space) is dropped then.
void append_token_bytes(const detail::TokenizerModel& m, int32_t id, bool skip_special_tokens, bool& at_start,
                        std::string& out) {
  m.check_id(id);
  if (skip_special_tokens && m.special[id]) return;
  std::string_view bytes = m.bytes_of_id[id];
  if (at_start && !bytes.empty()) {
    if (m.space_prefix && bytes.front() == ' ') bytes.remove_prefix(1);
    at_start = false;
  }
  out += bytes;
}

}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  bool at_start = true;
  for (const int32_t id : ids) append_token_bytes(*model_, id, skip_special_tokens, at_start, bytes);
  return utf8::to_valid_lossy(bytes);
}

Tokenizer::StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : model_(tokenizer.model_), skip_special_tokens_(skip_special_tokens) {}

// Everything but an incomplete sequence at the very end is final: later bytes cannot change how it
// decodes (an invalid byte stays invalid), so it is returned now and only the tail waits.
std::string Tokenizer::StreamDecoder::push(int32_t id) {
  append_token_bytes(*model_, id, skip_special_tokens_, at_start_, pending_);
  const size_t ready = pending_.size() - utf8::incomplete_suffix_length(pending_);
  std::string text = utf8::to_valid_lossy(std::string_view(pending_).substr(0, ready));
  pending_.erase(0, ready);
  return text;
}

std::string Tokenizer::StreamDecoder::flush() {
  std::string text = utf8::to_valid_lossy(pending_);
  pending_.clear();
  at_start_ = true;
  return text;
}

}  // namespace qllm
