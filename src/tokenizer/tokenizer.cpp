// Tokenizer loading, encoding and vocabulary queries. Decoding lives in decoder.cpp.
#include <algorithm>

#include "core/file_io.h"
#include "core/gguf.h"
#include "core/utf8.h"
#include "qllm/error.h"
#include "qllm/tokenizer.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer_model.h"

namespace qllm {

namespace detail {

namespace {

std::string split_origin(const TokenizerSpec& spec) {
  return spec.file.string() + ": field 'pre_tokenizer.pretokenizers[0].pattern.Regex'";
}

}  // namespace

TokenizerModel::DecodedVocab TokenizerModel::decode_vocab(const Vocab& vocab) {
  DecodedVocab decoded;
  decoded.bytes_of_id.resize(vocab.text_of_id.size());
  decoded.byte_level_ids.reserve(vocab.id_of_text.size());
  for (size_t id = 0; id < vocab.text_of_id.size(); ++id) {
    if (!vocab.assigned[id]) continue;
    const std::string& text = vocab.text_of_id[id];
    // A string holding a character outside the byte table stands for its own UTF-8 bytes, as HF's
    // ByteLevel decoder writes it; BPE can never produce such a token.
    if (auto bytes = byte_level::bytes_of(text)) {
      decoded.bytes_of_id[id] = std::move(*bytes);
      decoded.byte_level_ids.push_back(static_cast<int32_t>(id));
    } else {
      decoded.bytes_of_id[id] = text;
    }
  }
  return decoded;
}

// decode_vocab reads spec.vocab before the delegated constructor moves anything out of it: std::move
// only casts.
TokenizerModel::TokenizerModel(TokenizerSpec spec)
    : TokenizerModel(std::move(spec), decode_vocab(spec.vocab)) {}

TokenizerModel::TokenizerModel(TokenizerSpec&& spec, DecodedVocab decoded)
    : file(spec.file),
      text_of_id(std::move(spec.vocab.text_of_id)),
      bytes_of_id(std::move(decoded.bytes_of_id)),
      assigned(std::move(spec.vocab.assigned)),
      id_of_text(std::move(spec.vocab.id_of_text)),
      added_tokens(spec.added_tokens),
      prefix_ids(std::move(spec.prefix_ids)),
      suffix_ids(std::move(spec.suffix_ids)) {
  splitters.emplace_back(spec.split_pattern, split_origin(spec));
  // Before added tokens replace bytes_of_id entries.
  bpe.emplace(spec.merges, BpeOptions{spec.ignore_merges, spec.unk_id, spec.fuse_unk}, bytes_of_id,
              decoded.byte_level_ids);
  size_t n = assigned.size();  // one past the largest id of model.vocab and added_tokens
  for (const AddedToken& token : spec.added_tokens) n = std::max(n, static_cast<size_t>(token.id) + 1);
  text_of_id.resize(n);
  bytes_of_id.resize(n);
  assigned.resize(n, 0);
  special.assign(n, 0);
  id_of_text.reserve(id_of_text.size() + spec.added_tokens.size());
  for (size_t i = 0; i < spec.added_tokens.size(); ++i) {
    const AddedToken& token = spec.added_tokens[i];
    const auto existing = id_of_text.find(token.content);
    QLLM_CHECK(existing == id_of_text.end() || existing->second == token.id,
               "{}: field 'added_tokens[{}]': \"{}\" has id {} but model.vocab gives it id {}", file.string(),
               i, token.content, token.id, existing == id_of_text.end() ? -1 : existing->second);
    QLLM_CHECK(!assigned[token.id] || text_of_id[token.id] == token.content,
               "{}: field 'added_tokens[{}]': id {} of \"{}\" already belongs to \"{}\"", file.string(), i,
               token.id, token.content, text_of_id[token.id]);
    text_of_id[token.id] = token.content;
    bytes_of_id[token.id] = token.content;  // added tokens decode to their content, not through ByteLevel
    assigned[token.id] = 1;
    special[token.id] = token.special ? 1 : 0;
    id_of_text[token.content] = token.id;
  }
  for (const int32_t id : prefix_ids) check_id(id);
  for (const int32_t id : suffix_ids) check_id(id);
}

void TokenizerModel::check_id(int32_t id) const {
  QLLM_CHECK(id >= 0 && static_cast<size_t>(id) < assigned.size() && assigned[id],
             "token id {} is not in the vocabulary of {} ({} ids)", id, file.string(), assigned.size());
}

void TokenizerModel::pre_tokenize(std::string_view text, std::vector<std::string_view>& pieces) const {
  pieces.clear();
  splitters.front().split(text, pieces);
  std::vector<std::string_view> refined;
  for (size_t i = 1; i < splitters.size(); ++i) {
    refined.clear();
    for (const std::string_view piece : pieces) splitters[i].split(piece, refined);
    pieces.swap(refined);
  }
}

}  // namespace detail

namespace {

// tokenizer_config.json names a special token (bos_token) as a string or as an AddedToken object
// {"content": ...}.
std::optional<int32_t> config_token(const nlohmann::json& config, const char* key,
                                    const detail::TokenizerModel& m, const std::filesystem::path& file) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  const nlohmann::json& value = it->is_object() && it->contains("content") ? (*it)["content"] : *it;
  QLLM_CHECK(value.is_string(), "{}: field '{}' must be a token string", file.string(), key);
  const auto id = m.id_of_text.find(value.get<std::string>());
  QLLM_CHECK(id != m.id_of_text.end(), "{}: field '{}': \"{}\" is not a token of the vocabulary",
             file.string(), key, value.get<std::string>());
  return id->second;
}

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& dir) {
  if (dir.extension() == ".gguf" && std::filesystem::is_regular_file(dir)) {
    return from_gguf_vocab(read_gguf_vocab(GgufFile::open(dir.string())));
  }
  QLLM_CHECK(std::filesystem::is_directory(dir),
             "{}: not a directory (expected a folder with tokenizer.json, or a .gguf file)", dir.string());
  const auto tokenizer_json = dir / "tokenizer.json";
  QLLM_CHECK(std::filesystem::exists(tokenizer_json), "{}: no tokenizer.json in this directory",
             dir.string());
  auto model = std::make_shared<detail::TokenizerModel>(detail::parse_tokenizer_json(tokenizer_json));

  if (const auto config_file = dir / "tokenizer_config.json"; std::filesystem::exists(config_file)) {
    const nlohmann::json config = read_json_file(config_file);
    QLLM_CHECK(config.is_object(), "{}: must be a JSON object", config_file.string());
    model->bos = config_token(config, "bos_token", *model, config_file);
  }
  if (!model->bos && model->prefix_ids.size() == 1) model->bos = model->prefix_ids[0];
  return Tokenizer(std::move(model));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  utf8::check_valid(text, "tokenizer input text");
  const detail::TokenizerModel& m = *model_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  if (add_special_tokens) ids.insert(ids.end(), m.prefix_ids.begin(), m.prefix_ids.end());

  // Natural text repeats its words: BPE runs once per distinct pre-token of this call. The cache lives
  // in the call (keys point into `text`), so a const Tokenizer needs no locking.
  struct Span {
    uint32_t offset;
    uint32_t length;
  };
  std::unordered_map<std::string_view, Span> cache;
  std::vector<int32_t> cached_ids;
  std::vector<std::string_view> pieces;
  bool after_special = true;  // at the start of the text, or right after a special token
  for (const detail::Segment& segment : m.added_tokens.split(text)) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
      after_special = true;
      continue;
    }
    if (segment.text.empty()) continue;
    if (m.spm) {  // SentencePiece BPE takes the whole stretch of text: it has no pre-tokenizer
      m.spm->encode(segment.text, m.space_prefix && after_special, ids);
      after_special = false;
      continue;
    }
    m.pre_tokenize(segment.text, pieces);
    for (const std::string_view piece : pieces) {
      auto [it, inserted] = cache.try_emplace(piece, Span{static_cast<uint32_t>(cached_ids.size()), 0});
      if (inserted) {
        m.bpe->encode(piece, cached_ids);
        it->second.length = static_cast<uint32_t>(cached_ids.size()) - it->second.offset;
      }
      const auto first = cached_ids.begin() + it->second.offset;
      ids.insert(ids.end(), first, first + it->second.length);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), m.suffix_ids.begin(), m.suffix_ids.end());
  return ids;
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  const auto it = model_->id_of_text.find(token);
  if (it == model_->id_of_text.end()) return std::nullopt;
  return it->second;
}

std::string_view Tokenizer::token_text(int32_t id) const {
  model_->check_id(id);
  return model_->text_of_id[id];
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  model_->check_id(id);
  return model_->bytes_of_id[id];
}

bool Tokenizer::is_special(int32_t id) const {
  model_->check_id(id);
  return model_->special[id] != 0;
}

size_t Tokenizer::vocab_size() const {
  return model_->assigned.size();
}
std::optional<int32_t> Tokenizer::bos_id() const {
  return model_->bos;
}

}  // namespace qllm
