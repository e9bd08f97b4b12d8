// Hugging Face byte-level BPE tokenizers (tokenizer.json, as Llama 3 ships it), GGUF tokenizers and the
// Llama 3.x chat formats. tokenizer.json: encoding and decoding give exactly the ids and strings of HF
// `tokenizers` for the configurations that load. GGUF ("gpt2" byte-level BPE with the llama-bpe, smollm or
// gpt-2 pre-tokenizer, "llama" SentencePiece BPE): encoding gives exactly the ids of llama.cpp's
// llama_tokenize with parse_special. Every other configuration is refused at load time with a qllm::Error
// naming the field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qllm {

namespace detail {
struct TokenizerModel;
}
struct GgufVocab;  // src/tokenizer/gguf_vocab.h

class Tokenizer {
 public:
  // Loads <dir>/tokenizer.json (and tokenizer_config.json when present), or the tokenizer of a .gguf
  // file given instead of a folder. Throws qllm::Error naming the file and field (or metadata key) for
  // malformed or unsupported content.
  static Tokenizer load(const std::filesystem::path& dir);

  // The tokenizer of a GGUF vocabulary (tokenizer.ggml.* metadata). Throws qllm::Error naming the key
  // (and index) for a malformed vocabulary or an unsupported model or pre-tokenizer.
  static Tokenizer from_gguf_vocab(const GgufVocab& vocab);

  // `text` must be valid UTF-8 (qllm::Error with the offset of the first bad byte otherwise).
  // add_special_tokens: apply the post_processor, as HF encode(add_special_tokens=True). With Llama 3's
  // own tokenizer.json, whose post_processor is ByteLevel only, that adds nothing; with a
  // TemplateProcessing post_processor it adds BOS. GGUF: BOS and EOS as add_bos_token / add_eos_token say.
  // Special tokens written in the text (GGUF: control, user-defined and unknown tokens) are always matched.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;

  // Invalid UTF-8 in the decoded bytes becomes U+FFFD (one per maximal invalid subsequence), as HF does.
  // GGUF "llama" vocabularies with a space prefix: the leading space of the text is dropped, as HF's
  // SentencePiece decoders do, so that decode(encode(text)) == text.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  std::optional<int32_t> token_id(std::string_view token) const;  // e.g. "<|eot_id|>"
  std::string_view token_text(int32_t id) const;                  // raw vocab string ("Ġthe")
  // What decode writes for the id (" the"): bytes, possibly part of a UTF-8 character.
  std::string_view token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;
  size_t vocab_size() const;  // one past the largest id (model vocabulary and added tokens)
  // tokenizer_config "bos_token", else the post_processor's prefix; GGUF: tokenizer.ggml.bos_token_id
  std::optional<int32_t> bos_id() const;

  // Streaming decode, one id at a time: push() returns the text that became complete and holds back a
  // trailing incomplete UTF-8 sequence until a later token completes it. The concatenation of every
  // push() and the final flush() equals decode() of the same ids.
  class StreamDecoder {
   public:
    StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens);
    std::string push(int32_t id);
    std::string flush();  // what is held back, invalid bytes replaced by U+FFFD; resets the decoder

   private:
    std::shared_ptr<const detail::TokenizerModel> model_;
    bool skip_special_tokens_;
    std::string pending_;   // bytes of an incomplete UTF-8 sequence at the end of the decoded stream
    bool at_start_ = true;  // nothing decoded yet (a SentencePiece space prefix is still to be dropped)
  };

 private:
  explicit Tokenizer(std::shared_ptr<const detail::TokenizerModel> model) : model_(std::move(model)) {}
  std::shared_ptr<const detail::TokenizerModel> model_;  // immutable: copies and threads share it
};

struct ChatMessage {
  std::string role;
  std::string content;
};

// Which chat format a ChatTemplate renders.
enum class ChatFormat {
  Llama3,   // Llama 3.0: each message as <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
  Llama31,  // Meta's Llama 3.1 template: a system turn with "Cutting Knowledge Date" and "Today Date" first
  Llama32,  // Meta's Llama 3.2 template: the same, today's date by default
};

// The Llama 3 chat templates (3.0, and Meta's published 3.1 and 3.2 templates). The Jinja source is not
// interpreted: a 3.0 template is recognised as Llama 3 style and its variations (BOS, content trimmed,
// generation prompt conditional) are read from it; a template with the Llama 3.1+ date preamble must be
// Meta's 3.1 or 3.2 text (up to whitespace, comments and quote style). Anything else is refused at load
// time, so render() never silently differs from what Hugging Face's apply_chat_template writes.
class ChatTemplate {
 public:
  // Reads chat_template.jinja in `dir`, else "chat_template" of tokenizer_config.json; `bos_token` comes
  // from tokenizer_config.json. Refuses templates that are not Llama 3 style with a clear qllm::Error.
  static ChatTemplate load(const std::filesystem::path& dir);

  // 3.0: <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>... then the
  // assistant header when add_generation_prompt (or always, when the template writes it unconditionally,
  // as Meta's original Llama 3 template does).
  // 3.1 / 3.2: <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date:
  // December 2023\nToday Date: {date()}\n\n{first message's content, trimmed, when its role is "system",
  // else nothing}<|eot_id|>, then the other messages as in 3.0 (content trimmed), then the assistant header
  // when add_generation_prompt. Roles "tool" and "ipython" are refused ("tool calling is not supported").
  // Throws for an empty message list.
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  // The date the 3.1 / 3.2 templates write after "Today Date: " (their `date_string`), e.g. "26 Jul 2024";
  // 3.0 templates write no date and ignore it.
  void set_date(std::string date);
  // The date render() writes: the one set, else the template's default: "26 Jul 2024" for 3.1, today's
  // local date as strftime "%d %b %Y" (English month) for 3.2; "" for 3.0.
  std::string date() const;

  ChatFormat format() const { return format_; }
  // Where the template came from ("<dir>/chat_template.jinja" or "<dir>/tokenizer_config.json").
  const std::filesystem::path& source() const { return source_; }

 private:
  std::filesystem::path source_;
  ChatFormat format_ = ChatFormat::Llama3;
  std::string bos_text_;                   // empty when the template writes no BOS
  bool trims_content_ = false;             // `message['content'] | trim`
  bool generation_prompt_always_ = false;  // assistant header written without `if add_generation_prompt`
  std::optional<std::string> date_;        // set_date(); else the template's default
};

}  // namespace qllm
