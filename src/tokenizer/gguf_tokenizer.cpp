// Tokenizers of GGUF vocabularies (gguf_vocab.h): the vocabulary is checked field by field, then turned
// into the same TokenizerModel as a tokenizer.json, with llama.cpp's choices where they differ from HF's
// (ids must equal llama.cpp's): special tokens are matched longest token first; the pre-tokenizer is
// llama.cpp's list of regexes for tokenizer.ggml.pre, with llama.cpp's Unicode classes; a merge listed
// twice keeps its first rank; "llama" vocabularies use SentencePiece-style BPE (spm.h).
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string_view>
#include <unordered_set>

#include "qllm/error.h"
#include "qllm/tokenizer.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer_model.h"

namespace qllm {

namespace detail {

namespace {

// llama.cpp's pre-tokenizers (llm_tokenizer_bpe): regexes applied in sequence, each splitting the pieces
// of the one before, every match and every stretch between matches a piece. llama.cpp runs the GPT-2 and
// Llama 3 regexes through hand-written code and "\p{N}" through std::regex on a copy of the text with each
// non-ASCII code point replaced by its class; all of them split as these regexes do under PCRE2 when \p{L},
// \p{N} and \s are llama.cpp's own classes (UnicodeClasses::LlamaCpp).
constexpr const char* kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
// Llama 3's regex with (?i:'s|...) spelled as llama.cpp matches it: its code lowercases the letters
// after the apostrophe, and no letter but S lowercases to s (PCRE2's caseless 's' would also take U+017F).
constexpr const char* kLlama3Regex =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct PreTokenizer {
  std::string_view name;
  std::vector<const char*> regexes;
  bool ignore_merges;  // a pre-token that is itself a token is not merged
  bool add_bos;        // llama.cpp's default when tokenizer.ggml.add_bos_token is absent
};

const std::vector<PreTokenizer>& pre_tokenizers() {
  static const std::vector<PreTokenizer> table = {
      {"llama-bpe", {kLlama3Regex}, true, true},  // Llama 3 (llama.cpp also reads it as "llama3", "llama-v3")
      {"llama3", {kLlama3Regex}, true, true},
      {"llama-v3", {kLlama3Regex}, true, true},
      {"smollm", {"\\p{N}", kGpt2Regex}, false, false},  // every digit alone, then GPT-2's regex
      {"gpt-2", {kGpt2Regex}, false, false},
  };
  return table;
}

// Texts that llama.cpp makes control tokens whatever their token_type (end-of-generation and fill-in-the-
// middle markers it recognises by text), so that they are matched in text and skipped by decode. llama.cpp
// skips the fill-in-the-middle and "<｜end▁of▁sentence｜>" ones when their tokenizer.ggml.*_token_id key is
// present, which GgufVocab does not record: a vocabulary with such a key and such a text, not typed
// control, would differ (none is known).
constexpr std::string_view kControlTexts[] = {
    "<|eot_id|>",     "<|im_end|>",   "<|end|>",         "<end_of_turn>",
    "<|endoftext|>",  "<|eom_id|>",   "<EOT>",           "<｜end▁of▁sentence｜>",
    "<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>",
    "<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>",  "<SUF>",
    "<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>",   "<MID>",
    "<|fim_pad|>",    "<fim-pad>",    "<PAD>",           "<|fim_repo|>",
    "<|repo_name|>",  "<fim-repo>",   "<REPO>",          "<|file_sep|>",
};

// Errors name the vocabulary's origin and the tokenizer.ggml key.
class Fields {
 public:
  explicit Fields(std::string origin) : origin_(std::move(origin)) {}
  [[noreturn]] void error(std::string_view key, std::string_view problem) const {
    fail("{}: tokenizer.ggml.{}: {}", origin_, key, problem);
  }
  const std::string& origin() const { return origin_; }

 private:
  std::string origin_;
};

void check_ids_and_sizes(const Fields& f, const GgufVocab& vocab) {
  const size_t n = vocab.tokens.size();
  if (n == 0) f.error("tokens", "is empty");
  if (n > static_cast<size_t>(INT32_MAX))
    f.error("tokens", fmt::format("has {} tokens (at most 2^31 - 1)", n));
  if (!vocab.scores.empty() && vocab.scores.size() != n)
    f.error("scores", fmt::format("has {} entries for {} tokens", vocab.scores.size(), n));
  if (!vocab.token_type.empty() && vocab.token_type.size() != n)
    f.error("token_type", fmt::format("has {} entries for {} tokens", vocab.token_type.size(), n));
  for (size_t i = 0; i < vocab.scores.size(); ++i) {
    if (std::isnan(vocab.scores[i])) f.error(fmt::format("scores[{}]", i), "is NaN");
  }
  for (size_t i = 0; i < vocab.token_type.size(); ++i) {
    const int32_t type = vocab.token_type[i];
    if (type < 0 || type > static_cast<int32_t>(GgufTokenType::Byte))
      f.error(fmt::format("token_type[{}]", i), fmt::format("{} is not a token type (0 to 6)", type));
  }
  const std::pair<const char*, const std::optional<uint32_t>*> ids[] = {{"bos_token_id", &vocab.bos_id},
                                                                        {"eos_token_id", &vocab.eos_id},
                                                                        {"unknown_token_id", &vocab.unk_id},
                                                                        {"padding_token_id", &vocab.pad_id}};
  for (const auto& [key, id] : ids) {
    if (id->has_value() && **id >= n)
      f.error(key, fmt::format("{} is not a token id (the vocabulary has {})", **id, n));
  }
}

// token_type with llama.cpp's corrections (kControlTexts); all normal when the file has none.
std::vector<GgufTokenType> token_types(const GgufVocab& vocab) {
  std::vector<GgufTokenType> types(vocab.tokens.size(), GgufTokenType::Normal);
  for (size_t i = 0; i < vocab.token_type.size(); ++i)
    types[i] = static_cast<GgufTokenType>(vocab.token_type[i]);
  for (size_t i = 0; i < types.size(); ++i) {
    if (std::find(std::begin(kControlTexts), std::end(kControlTexts), vocab.tokens[i]) !=
        std::end(kControlTexts))
      types[i] = GgufTokenType::Control;
  }
  return types;
}

bool is_matched_in_text(GgufTokenType type) {
  return type == GgufTokenType::Control || type == GgufTokenType::UserDefined ||
         type == GgufTokenType::Unknown;
}

bool is_skipped_special(GgufTokenType type) {
  return type == GgufTokenType::Control || type == GgufTokenType::Unknown;
}

const PreTokenizer& find_pre_tokenizer(const Fields& f, const std::string& name) {
  for (const PreTokenizer& pre : pre_tokenizers()) {
    if (pre.name == name) return pre;
  }
  std::string supported;
  for (const PreTokenizer& pre : pre_tokenizers())
    supported += fmt::format("{}\"{}\"", supported.empty() ? "" : ", ", pre.name);
  f.error("pre", fmt::format("unsupported pre-tokenizer \"{}\" (qllm supports {})", name, supported));
}

// "left right" split at the first space after the first character (llama.cpp's reading), each part and
// their concatenation a token. A pair listed again keeps its first rank, as llama.cpp's map insert does.
std::vector<MergeRule> read_merges(const Fields& f, const GgufVocab& vocab,
                                   const StringMap<int32_t>& id_of_text) {
  std::vector<MergeRule> merges;
  merges.reserve(vocab.merges.size());
  std::unordered_set<uint64_t> seen;
  std::string merged;
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const std::string_view merge = vocab.merges[rank];
    const size_t space = merge.find(' ', 1);
    if (space == std::string_view::npos)
      f.error(fmt::format("merges[{}]", rank),
              fmt::format("\"{}\" is not two tokens separated by a space", merge));
    const std::string_view left = merge.substr(0, space), right = merge.substr(space + 1);
    merged.assign(left).append(right);
    int32_t ids[3];
    const std::string_view parts[3] = {left, right, merged};
    for (int k = 0; k < 3; ++k) {
      const auto it = id_of_text.find(parts[k]);
      if (it == id_of_text.end())
        f.error(fmt::format("merges[{}]", rank),
                fmt::format("\"{}\" is not a token (merge \"{}\")", parts[k], merge));
      ids[k] = it->second;
    }
    const uint64_t pair = (static_cast<uint64_t>(ids[0]) << 32) | static_cast<uint32_t>(ids[1]);
    if (seen.insert(pair).second) merges.push_back({ids[0], ids[1], ids[2]});
  }
  return merges;
}

// The byte of a "<0xXX>" token.
std::optional<uint8_t> byte_token_value(std::string_view text) {
  auto hex = [](char c) -> int {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
  };
  if (text.size() != 6 || !text.starts_with("<0x") || text[5] != '>' || hex(text[3]) < 0 || hex(text[4]) < 0)
    return std::nullopt;
  return static_cast<uint8_t>(hex(text[3]) * 16 + hex(text[4]));
}

std::string without_space_marks(std::string_view text) {
  constexpr std::string_view kSpaceMark = "\xE2\x96\x81";
  std::string out;
  for (size_t pos = 0; pos < text.size();) {
    if (text.substr(pos).starts_with(kSpaceMark)) {
      out += ' ';
      pos += kSpaceMark.size();
    } else {
      out += text[pos++];
    }
  }
  return out;
}

// What decode writes for each token: special and user-defined tokens as written, normal ones decoded,
// byte tokens ("llama") their byte; unused and undefined tokens nothing (llama.cpp's token_to_piece).
std::vector<std::string> decoded_bytes(const Fields& f, const std::vector<std::string>& text_of_id,
                                       const std::vector<GgufTokenType>& types, bool byte_level_bpe) {
  std::vector<std::string> bytes(text_of_id.size());
  for (size_t id = 0; id < text_of_id.size(); ++id) {
    const std::string& text = text_of_id[id];
    switch (types[id]) {
      case GgufTokenType::Normal:
        bytes[id] = byte_level_bpe ? byte_level::decode_token(text) : without_space_marks(text);
        break;
      case GgufTokenType::Control:
      case GgufTokenType::UserDefined:
      case GgufTokenType::Unknown:
        bytes[id] = text;
        break;
      case GgufTokenType::Byte:
        if (!byte_level_bpe) {
          const auto byte = byte_token_value(text);
          if (!byte)
            f.error(fmt::format("tokens[{}]", id),
                    fmt::format("\"{}\" has type byte but is not <0xXX>", text));
          bytes[id] = std::string(1, static_cast<char>(*byte));
        }
        break;
      default:
        break;
    }
  }
  return bytes;
}

BpeModel byte_level_bpe_model(const Fields& f, const GgufVocab& vocab, const PreTokenizer& pre,
                              const std::vector<std::string>& text_of_id,
                              const StringMap<int32_t>& id_of_text) {
  // Any token spelled in byte-table characters can come out of BPE, whatever its type (llama.cpp looks
  // merged symbols up among all tokens).
  std::vector<std::string> token_bytes(text_of_id.size());
  std::vector<int32_t> byte_level_ids;
  for (size_t id = 0; id < text_of_id.size(); ++id) {
    if (auto bytes = byte_level::bytes_of(text_of_id[id])) {
      token_bytes[id] = std::move(*bytes);
      byte_level_ids.push_back(static_cast<int32_t>(id));
    }
  }
  // llama.cpp drops a byte without a token, after merging, instead of writing an unknown token.
  const BpeOptions options{.ignore_merges = pre.ignore_merges, .drop_unknown_after_merging = true};
  return BpeModel(read_merges(f, vocab, id_of_text), options, token_bytes, byte_level_ids);
}

SpmModel sentence_piece_model(const GgufVocab& vocab, const std::vector<std::string>& text_of_id,
                              const StringMap<int32_t>& id_of_text) {
  std::array<int32_t, 256> byte_ids;
  for (int b = 0; b < 256; ++b) {  // llama.cpp's byte_to_token: <0xXX>, else the one-byte string
    auto it = id_of_text.find(fmt::format("<0x{:02X}>", b));
    if (it == id_of_text.end()) it = id_of_text.find(std::string(1, static_cast<char>(b)));
    byte_ids[b] = it == id_of_text.end() ? -1 : it->second;
  }
  const std::vector<float> scores =
      vocab.scores.empty() ? std::vector<float>(text_of_id.size(), 0.0f) : vocab.scores;
  return SpmModel(text_of_id, scores, byte_ids, static_cast<int32_t>(vocab.unk_id.value_or(0)));
}

}  // namespace

TokenizerModel::TokenizerModel(const GgufVocab& vocab) : file(vocab.origin) {
  const Fields f(vocab.origin);
  const bool byte_level_bpe = vocab.model == "gpt2";
  if (!byte_level_bpe && vocab.model != "llama")
    f.error("model", fmt::format("unsupported tokenizer model \"{}\" (qllm supports \"gpt2\", \"llama\")",
                                 vocab.model));
  const PreTokenizer* pre = byte_level_bpe ? &find_pre_tokenizer(f, vocab.pre) : nullptr;
  check_ids_and_sizes(f, vocab);
  const size_t n = vocab.tokens.size();
  const std::vector<GgufTokenType> types = token_types(vocab);

  text_of_id = vocab.tokens;
  assigned.assign(n, 1);
  special.assign(n, 0);
  id_of_text.reserve(n);
  std::vector<AddedToken> matched;
  for (size_t id = 0; id < n; ++id) {
    if (text_of_id[id].empty()) text_of_id[id] = fmt::format("[EMPTY_{}]", id);  // llama.cpp's stand-in
    const auto [it, inserted] = id_of_text.emplace(text_of_id[id], static_cast<int32_t>(id));
    if (!inserted)
      f.error(fmt::format("tokens[{}]", id),
              fmt::format("\"{}\" is also token {}", text_of_id[id], it->second));
    special[id] = is_skipped_special(types[id]) ? 1 : 0;
    if (is_matched_in_text(types[id])) matched.push_back({static_cast<int32_t>(id), text_of_id[id]});
  }
  added_tokens = AddedTokenMatcher(matched, AddedTokenOrder::LongestTokenFirst);
  bytes_of_id = decoded_bytes(f, text_of_id, types, byte_level_bpe);

  if (byte_level_bpe) {
    for (const char* regex : pre->regexes) {
      splitters.emplace_back(regex, fmt::format("{}: pre-tokenizer \"{}\"", f.origin(), pre->name),
                             UnicodeClasses::LlamaCpp);
    }
    bpe.emplace(byte_level_bpe_model(f, vocab, *pre, text_of_id, id_of_text));
  } else {
    spm.emplace(sentence_piece_model(vocab, text_of_id, id_of_text));
    space_prefix = vocab.add_space_prefix.value_or(true);
  }

  // llama.cpp's defaults when the file has no key: "llama" vocabularies BOS 1 (added), EOS 2, unknown 0
  // (sentence_piece_model); "gpt2" adds BOS as its pre-tokenizer says.
  std::optional<uint32_t> bos_id = vocab.bos_id, eos_id = vocab.eos_id;
  if (!byte_level_bpe) {
    if (!bos_id && n > 1) bos_id = 1;
    if (!eos_id && n > 2) eos_id = 2;
  }
  if (vocab.add_bos_token.value_or(byte_level_bpe ? pre->add_bos : true)) {
    if (!bos_id) f.error("bos_token_id", "missing, but BOS is to be added (tokenizer.ggml.add_bos_token)");
    prefix_ids.push_back(static_cast<int32_t>(*bos_id));
  }
  if (vocab.add_eos_token.value_or(false)) {
    if (!eos_id) f.error("eos_token_id", "missing, but EOS is to be added (tokenizer.ggml.add_eos_token)");
    suffix_ids.push_back(static_cast<int32_t>(*eos_id));
  }
  if (bos_id) bos = static_cast<int32_t>(*bos_id);
}

}  // namespace detail

Tokenizer Tokenizer::from_gguf_vocab(const GgufVocab& vocab) {
  return Tokenizer(std::make_shared<const detail::TokenizerModel>(vocab));
}

}  // namespace qllm
