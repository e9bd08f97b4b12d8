// Tokenizers and chat templates. Hugging Face byte-level BPE (tokenizer.json, as Llama 3 ships it): encoding
// and decoding give exactly the ids and strings of HF `tokenizers` for the configurations that load. GGUF
// ("gpt2" byte-level BPE with the llama-bpe, smollm or gpt-2 pre-tokenizer, "llama" SentencePiece BPE):
// encoding gives exactly the ids of llama.cpp's llama_tokenize with parse_special. Every other configuration
// is refused at load time with a qllm::Error naming the field. Chat templates are Jinja, interpreted
// (src/jinja/).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
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

namespace detail {
struct ChatTemplateProgram;
}

// A Hugging Face chat template (Jinja source), rendered by qllm's Jinja interpreter (src/jinja/) as
// transformers' apply_chat_template(messages, tokenize=False) renders it: byte for byte, or a qllm::Error
// (a template that raises, or uses what the interpreter does not cover) — never different text.
class ChatTemplate {
 public:
  // Reads chat_template.jinja in `dir`, else "chat_template" of tokenizer_config.json (a string, or a list
  // of {"name", "template"} of which "default" is used); bos_token and eos_token come from
  // tokenizer_config.json (a string or an AddedToken {"content": ...}) when it has them. Parses the
  // template: a syntax error or an unsupported construct is a qllm::Error naming the file and line:column.
  static ChatTemplate load(const std::filesystem::path& dir);

  // From template source, e.g. the GGUF key tokenizer.chat_template. `source` names it in errors.
  static ChatTemplate from_source(std::string_view template_text, std::optional<std::string> bos_token,
                                  std::optional<std::string> eos_token,
                                  std::filesystem::path source = "chat template");

  // The template's output for `messages` (role and content, valid UTF-8), with the variables
  // transformers passes: messages, tools=None, documents=None, add_generation_prompt, bos_token and
  // eos_token (when known), and those set by set_variable. Throws qllm::Error for an empty message list,
  // and when rendering fails (raise_exception in the template: the error holds its message).
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  // A further template variable, as apply_chat_template's keyword arguments give them: e.g.
  // set_variable("date_string", "26 Jul 2024") for the Llama 3.1 / 3.2 templates (which otherwise write
  // "26 Jul 2024" and today's date, strftime_now("%d %b %Y"), respectively).
  void set_variable(const std::string& name, std::string value);

  // Where the template came from ("<dir>/chat_template.jinja", "<dir>/tokenizer_config.json", or the
  // name given to from_source).
  const std::filesystem::path& source() const { return source_; }

 private:
  std::filesystem::path source_;
  std::shared_ptr<const detail::ChatTemplateProgram> program_;  // immutable: copies share it
  std::optional<std::string> bos_token_;
  std::optional<std::string> eos_token_;
  std::vector<std::pair<std::string, std::string>> variables_;
};

}  // namespace qllm
