#include "tokenizer/tokenizer_json.h"

#include <fmt/format.h>

#include <string_view>

#include "core/file_io.h"
#include "core/json.h"
#include "qllm/error.h"

namespace qllm::detail {

using nlohmann::json;

namespace {

// Field access with error messages that name the file and the field's path ("model.merges[12]").
class Fields {
 public:
  explicit Fields(const std::filesystem::path& file) : file_(file.string()) {}

  // Ids at or past this bound are refused: an id far beyond the tokens a file defines would size the id
  // tables (a 2^31 - 1 id: tens of GB) for nothing but holes.
  void set_id_limit(int64_t limit) { id_limit_ = limit; }

  [[noreturn]] void error(std::string_view field, std::string_view problem) const {
    fail("{}: field '{}': {}", file_, field, problem);
  }
  [[noreturn]] void unsupported(std::string_view field, const json& value, std::string_view supported) const {
    fail("{}: field '{}': unsupported value {} (qllm supports {})", file_, field, json_excerpt(value),
         supported);
  }

  const json& member(const json& object, std::string_view path, std::string_view key) const {
    const std::string field = join(path, key);
    if (!object.is_object()) error(path, "must be a JSON object");
    const auto it = object.find(key);
    if (it == object.end()) error(field, "missing");
    return *it;
  }

  // Absent and null read as `fallback`.
  bool boolean(const json& object, std::string_view path, std::string_view key, bool fallback) const {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) error(join(path, key), "must be true or false");
    return it->get<bool>();
  }

  std::string string(const json& value, std::string_view field) const {
    if (!value.is_string()) error(field, "must be a string");
    return value.get<std::string>();
  }

  // `field()` names the field; it is called only for the error message (vocabularies are large).
  template <typename FieldName>
  int32_t id(const json& value, FieldName&& field) const {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > INT32_MAX) {
      error(field(),
            fmt::format("must be a token id (a non-negative 32-bit integer), not {}", json_excerpt(value)));
    }
    if (value.get<int64_t>() >= id_limit_) {
      error(field(), fmt::format("id {} is not below {}, the number of tokens the file defines (model.vocab "
                                 "and added_tokens)",
                                 value.get<int64_t>(), id_limit_));
    }
    return value.get<int32_t>();
  }

  // Fields that change ids when set: absent, null, false, 0 or "" are their neutral values.
  void require_neutral(const json& object, std::string_view path, std::string_view key) const {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return;
    const json& v = *it;
    const bool neutral = (v.is_boolean() && !v.get<bool>()) || (v.is_number() && v.get<double>() == 0.0) ||
                         (v.is_string() && v.get<std::string>().empty());
    if (!neutral) unsupported(join(path, key), v, "null");
  }

  static std::string join(std::string_view path, std::string_view key) {
    return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
  }

 private:
  std::string file_;
  int64_t id_limit_ = INT32_MAX;
};

std::string_view type_of(const Fields& f, const json& object, std::string_view path) {
  const json& type = f.member(object, path, "type");
  if (!type.is_string()) f.error(Fields::join(path, "type"), "must be a string");
  return type.get_ref<const std::string&>();
}

// One pass over model.vocab fills both directions of spec.vocab; a duplicate id is found by the id index.
void read_vocab(const Fields& f, const json& model, TokenizerSpec& spec) {
  const json& vocab = f.member(model, "model", "vocab");
  if (!vocab.is_object()) f.error("model.vocab", "must be an object {token: id}");
  if (vocab.empty()) f.error("model.vocab", "is empty");
  Vocab& v = spec.vocab;
  v.text_of_id.reserve(vocab.size());
  v.assigned.reserve(vocab.size());
  v.id_of_text.reserve(vocab.size());
  for (const auto& [token, id_value] : vocab.get_ref<const json::object_t&>()) {
    const int32_t id = f.id(id_value, [&] { return fmt::format("model.vocab[\"{}\"]", token); });
    const auto index = static_cast<size_t>(id);
    if (index >= v.text_of_id.size()) {
      v.text_of_id.resize(index + 1);
      v.assigned.resize(index + 1, 0);
    }
    if (v.assigned[index]) {
      f.error("model.vocab",
              fmt::format("id {} is given to both \"{}\" and \"{}\"", id, v.text_of_id[index], token));
    }
    v.text_of_id[index] = token;
    v.assigned[index] = 1;
    v.id_of_text.emplace(token, id);
  }
}

// A merge is "left right" (the space separates: byte-level tokens never hold a space) or ["left", "right"].
// The views point into `merge`.
std::pair<std::string_view, std::string_view> merge_pair(const Fields& f, const json& merge, size_t rank) {
  auto field = [&] { return fmt::format("model.merges[{}]", rank); };
  if (merge.is_string()) {
    const std::string_view text = merge.get_ref<const std::string&>();
    const size_t space = text.find(' ');
    if (space == std::string_view::npos || text.find(' ', space + 1) != std::string_view::npos) {
      f.error(field(), fmt::format("\"{}\" is not two tokens separated by one space", text));
    }
    return {text.substr(0, space), text.substr(space + 1)};
  }
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
    return {merge[0].get_ref<const std::string&>(), merge[1].get_ref<const std::string&>()};
  }
  f.error(field(), fmt::format("must be \"a b\" or [\"a\", \"b\"], not {}", json_excerpt(merge)));
}

void read_merges(const Fields& f, const json& model, TokenizerSpec& spec) {
  const json& merges = f.member(model, "model", "merges");
  if (!merges.is_array()) f.error("model.merges", "must be an array");
  const StringMap<int32_t>& id_of = spec.vocab.id_of_text;
  auto lookup = [&](std::string_view token, size_t rank) {
    const auto it = id_of.find(token);
    if (it == id_of.end()) {
      f.error(fmt::format("model.merges[{}]", rank),
              fmt::format("token \"{}\" is not in model.vocab", token));
    }
    return it->second;
  };
  spec.merges.reserve(merges.size());
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto [left, right] = merge_pair(f, merges[rank], rank);
    merged.assign(left).append(right);
    spec.merges.push_back({lookup(left, rank), lookup(right, rank), lookup(merged, rank)});
  }
}

void read_model(const Fields& f, const json& root, TokenizerSpec& spec) {
  const json& model = f.member(root, "", "model");
  if (const auto type = type_of(f, model, "model"); type != "BPE")
    f.unsupported("model.type", type, "\"BPE\"");
  for (const char* key : {"dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback"}) {
    f.require_neutral(model, "model", key);
  }
  spec.ignore_merges = f.boolean(model, "model", "ignore_merges", false);
  spec.fuse_unk = f.boolean(model, "model", "fuse_unk", false);
  read_vocab(f, model, spec);
  read_merges(f, model, spec);
  if (const auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
    const std::string unk = f.string(*it, "model.unk_token");
    const auto unk_it = spec.vocab.id_of_text.find(unk);
    if (unk_it == spec.vocab.id_of_text.end())
      f.error("model.unk_token", fmt::format("\"{}\" is not in model.vocab", unk));
    spec.unk_id = unk_it->second;
  }
}

void read_added_tokens(const Fields& f, const json& root, TokenizerSpec& spec) {
  const auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return;
  if (!it->is_array()) f.error("added_tokens", "must be an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& entry = (*it)[i];
    const std::string path = fmt::format("added_tokens[{}]", i);
    AddedToken token;
    token.id = f.id(f.member(entry, path, "id"), [&] { return path + ".id"; });
    token.content = f.string(f.member(entry, path, "content"), path + ".content");
    if (token.content.empty()) f.error(path + ".content", "is empty");
    if (f.boolean(entry, path, "single_word", false)) f.unsupported(path + ".single_word", true, "false");
    token.lstrip = f.boolean(entry, path, "lstrip", false);
    token.rstrip = f.boolean(entry, path, "rstrip", false);
    token.normalized = f.boolean(entry, path, "normalized", false);
    token.special = f.boolean(entry, path, "special", false);
    spec.added_tokens.push_back(std::move(token));
  }
}

// Llama 3: Sequence[Split(regex, Isolated), ByteLevel(add_prefix_space = false, use_regex = false)].
void read_pre_tokenizer(const Fields& f, const json& root, TokenizerSpec& spec) {
  constexpr std::string_view kSupported =
      "Sequence[Split(Regex, behavior Isolated, invert false), ByteLevel(add_prefix_space false, use_regex "
      "false)]";
  const json& pre = f.member(root, "", "pre_tokenizer");
  if (pre.is_null() || type_of(f, pre, "pre_tokenizer") != "Sequence")
    f.unsupported("pre_tokenizer", pre, kSupported);
  const json& steps = f.member(pre, "pre_tokenizer", "pretokenizers");
  if (!steps.is_array() || steps.size() != 2) f.unsupported("pre_tokenizer.pretokenizers", steps, kSupported);

  const json& split = steps[0];
  const std::string split_path = "pre_tokenizer.pretokenizers[0]";
  if (type_of(f, split, split_path) != "Split") f.unsupported(split_path, split, kSupported);
  const json& pattern = f.member(split, split_path, "pattern");
  if (!pattern.is_object() || !pattern.contains("Regex")) {
    f.unsupported(split_path + ".pattern", pattern, "{\"Regex\": ...}");
  }
  spec.split_pattern = f.string(pattern["Regex"], split_path + ".pattern.Regex");
  const json& behavior = f.member(split, split_path, "behavior");
  if (behavior != "Isolated") f.unsupported(split_path + ".behavior", behavior, "\"Isolated\"");
  if (f.boolean(split, split_path, "invert", false)) f.unsupported(split_path + ".invert", true, "false");

  const json& byte_level = steps[1];
  const std::string byte_path = "pre_tokenizer.pretokenizers[1]";
  if (type_of(f, byte_level, byte_path) != "ByteLevel") f.unsupported(byte_path, byte_level, kSupported);
  for (const char* key : {"add_prefix_space", "use_regex"}) {
    if (f.boolean(byte_level, byte_path, key, true))
      f.unsupported(Fields::join(byte_path, key), true, "false");
  }
}

int32_t template_special_token_id(const Fields& f, const json& processor, const std::string& path,
                                  const json& item) {
  const std::string name = f.string(f.member(item, path, "id"), path + ".id");
  const json& special = f.member(processor, "post_processor", "special_tokens");
  const auto it = special.find(name);
  if (it == special.end()) f.error(path + ".id", fmt::format("\"{}\" is not in special_tokens", name));
  const json& ids = f.member(*it, "post_processor.special_tokens." + name, "ids");
  if (!ids.is_array() || ids.size() != 1)
    f.unsupported("post_processor.special_tokens." + name + ".ids", ids, "one id");
  return f.id(ids[0], [&] { return "post_processor.special_tokens." + name + ".ids[0]"; });
}

// TemplateProcessing "single": special tokens around one sequence "A" (Llama 3: [BOS, A]).
void read_template_processing(const Fields& f, const json& processor, TokenizerSpec& spec) {
  const json& single = f.member(processor, "post_processor", "single");
  if (!single.is_array()) f.error("post_processor.single", "must be an array");
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string path = fmt::format("post_processor.single[{}]", i);
    const json& item = single[i];
    if (item.contains("SpecialToken")) {
      const int32_t id =
          template_special_token_id(f, processor, path + ".SpecialToken", item["SpecialToken"]);
      (seen_sequence ? spec.suffix_ids : spec.prefix_ids).push_back(id);
    } else if (item.contains("Sequence") && !seen_sequence) {
      seen_sequence = true;
    } else {
      f.unsupported(path, item, "SpecialToken items around one Sequence");
    }
  }
  if (!seen_sequence) f.error("post_processor.single", "has no Sequence item");
}

// The post_processor only matters for ids through TemplateProcessing: ByteLevel's only changes offsets.
void read_post_processor(const Fields& f, const json& root, TokenizerSpec& spec) {
  const auto it = root.find("post_processor");
  if (it == root.end() || it->is_null()) return;
  std::vector<const json*> processors = {&*it};
  if (type_of(f, *it, "post_processor") == "Sequence") {
    const json& list = f.member(*it, "post_processor", "processors");
    if (!list.is_array()) f.error("post_processor.processors", "must be an array");
    processors.clear();
    for (const json& p : list) processors.push_back(&p);
  }
  for (const json* p : processors) {
    const auto type = type_of(f, *p, "post_processor");
    if (type == "TemplateProcessing") {
      read_template_processing(f, *p, spec);
    } else if (type != "ByteLevel") {
      f.unsupported("post_processor.type", type, "ByteLevel, TemplateProcessing or a Sequence of them");
    }
  }
}

void check_unsupported_sections(const Fields& f, const json& root) {
  for (const char* key : {"normalizer", "truncation", "padding"}) {
    if (const auto it = root.find(key); it != root.end() && !it->is_null()) f.unsupported(key, *it, "null");
  }
  const json& decoder = f.member(root, "", "decoder");
  if (decoder.is_null() || type_of(f, decoder, "decoder") != "ByteLevel") {
    f.unsupported("decoder", decoder, "{\"type\": \"ByteLevel\"}");
  }
}

}  // namespace

TokenizerSpec parse_tokenizer_json(const std::filesystem::path& file) {
  const json root = read_json_file(file);
  Fields f(file);
  if (!root.is_object()) f.error("(root)", "must be a JSON object");
  int64_t defined_tokens = 0;
  for (const char* path : {"/model/vocab", "/added_tokens"}) {
    const json::json_pointer pointer(path);
    if (root.contains(pointer) && (root[pointer].is_object() || root[pointer].is_array())) {
      defined_tokens += static_cast<int64_t>(root[pointer].size());
    }
  }
  f.set_id_limit(defined_tokens);
  TokenizerSpec spec;
  spec.file = file;
  check_unsupported_sections(f, root);
  read_model(f, root, spec);
  read_added_tokens(f, root, spec);
  read_pre_tokenizer(f, root, spec);
  read_post_processor(f, root, spec);
  return spec;
}

}  // namespace qllm::detail
