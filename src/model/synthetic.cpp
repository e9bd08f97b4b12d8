#include "model/synthetic.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "core/file_io.h"
#include "core/progress.h"
#include "core/random.h"
#include "model/safetensors.h"
#include "qllm/error.h"
#include "qllm/half.h"

namespace qllm {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr double kInitStddev = 0.02;  // HF initializer_range

// Llama 3's chat template (the form with a conditional generation prompt, as transformers 5 writes it).
constexpr const char* kLlama3ChatTemplate =
    "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if "
    "add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";

// GPT-2's byte-to-unicode table: printable bytes stand for themselves, the others map to U+0100 onwards.
std::string byte_stand_in(int byte) {
  const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE);
  uint32_t code = static_cast<uint32_t>(byte);
  if (!printable) {
    int rank = 0;  // how many non-printable bytes come before this one
    for (int b = 0; b < byte; ++b) {
      const bool p = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      if (!p) ++rank;
    }
    code = 256 + static_cast<uint32_t>(rank);
  }
  std::string utf8;
  if (code < 0x80) {
    utf8 += static_cast<char>(code);
  } else {  // every stand-in is below U+0800: two bytes
    utf8 += static_cast<char>(0xC0 | (code >> 6));
    utf8 += static_cast<char>(0x80 | (code & 0x3F));
  }
  return utf8;
}

// Ids 256 .. end-1 become merged tokens, so that every id below the special tokens is a real token (a
// random model samples any id, and each must decode): all byte pairs in byte order, then pair + byte.
// Returns the merges ("a b", in rank order) and adds the tokens to `vocab`.
json fill_with_merges(json& vocab, int64_t end) {
  std::vector<std::string> stand_in(256);
  for (int b = 0; b < 256; ++b) stand_in[b] = byte_stand_in(b);
  json merges = json::array();
  int64_t id = 256;
  for (int a = 0; a < 256 && id < end; ++a) {
    for (int b = 0; b < 256 && id < end; ++b, ++id) {
      merges.push_back(stand_in[a] + " " + stand_in[b]);
      vocab[stand_in[a] + stand_in[b]] = id;
    }
  }
  for (int a = 0; a < 256 && id < end; ++a) {
    for (int b = 0; b < 256 && id < end; ++b) {
      for (int c = 0; c < 256 && id < end; ++c, ++id) {
        merges.push_back(stand_in[a] + stand_in[b] + " " + stand_in[c]);
        vocab[stand_in[a] + stand_in[b] + stand_in[c]] = id;
      }
    }
  }
  QLLM_CHECK(id == end, "synthetic tokenizer: cannot fill {} ids with merges", end - 256);
  return merges;
}

void write_json(const fs::path& path, const json& j) {
  std::ofstream out(path);
  QLLM_CHECK(out.good(), "cannot create '{}'", path.string());
  out << j.dump(2) << "\n";
  QLLM_CHECK(out.good(), "error while writing '{}'", path.string());
}

// Copies the tokenizer files of `dir` and points the config's vocabulary, BOS and EOS at its tokens.
void copy_tokenizer(const fs::path& dir, const fs::path& out, LlamaConfig& config, bool grow_vocab) {
  const fs::path tokenizer_json = dir / "tokenizer.json";
  QLLM_CHECK(fs::exists(tokenizer_json), "--tokenizer: '{}' does not exist", tokenizer_json.string());
  const json tok = read_json_file(tokenizer_json);
  int64_t max_id = -1;
  std::map<std::string, int64_t> special;
  if (tok.contains("model") && tok["model"].contains("vocab") && tok["model"]["vocab"].is_object()) {
    for (const auto& [text, id] : tok["model"]["vocab"].items()) max_id = std::max(max_id, id.get<int64_t>());
  }
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
    for (const json& t : tok["added_tokens"]) {
      max_id = std::max(max_id, t.at("id").get<int64_t>());
      special[t.at("content").get<std::string>()] = t.at("id").get<int64_t>();
    }
  }
  QLLM_CHECK(max_id >= 0, "--tokenizer: '{}' has no vocabulary", tokenizer_json.string());
  if (grow_vocab) config.vocab_size = max_id + 1;
  QLLM_CHECK(max_id < config.vocab_size,
             "--tokenizer: '{}' has token ids up to {}, beyond the vocabulary of {}", tokenizer_json.string(),
             max_id, config.vocab_size);
  config.bos_token_id = special.count("<|begin_of_text|>") ? special["<|begin_of_text|>"] : -1;
  config.eos_token_ids.clear();
  for (const char* name : {"<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"}) {
    if (special.count(name)) config.eos_token_ids.push_back(special[name]);
  }
  for (const char* file :
       {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"}) {
    if (fs::exists(dir / file)) fs::copy_file(dir / file, out / file, fs::copy_options::overwrite_existing);
  }
}

void write_generated_tokenizer(const fs::path& out, int64_t special_offset, int64_t special_count,
                               const LlamaConfig& config) {
  write_json(out / "tokenizer.json", byte_level_tokenizer_json(special_offset, special_count));
  json added = json::object();
  for (int64_t i = 0; i < special_count; ++i) {
    added[std::to_string(special_offset + i)] = {{"content", llama3_special_token(i)},
                                                 {"lstrip", false},
                                                 {"normalized", false},
                                                 {"rstrip", false},
                                                 {"single_word", false},
                                                 {"special", true}};
  }
  write_json(out / "tokenizer_config.json", {{"added_tokens_decoder", added},
                                             {"bos_token", "<|begin_of_text|>"},
                                             {"chat_template", kLlama3ChatTemplate},
                                             {"clean_up_tokenization_spaces", true},
                                             {"eos_token", "<|eot_id|>"},
                                             {"model_input_names", {"input_ids", "attention_mask"}},
                                             {"model_max_length", config.max_position_embeddings},
                                             {"tokenizer_class", "PreTrainedTokenizerFast"}});
}

// The weights in Hugging Face order, each filled from one seeded stream when written.
std::vector<TensorToWrite> random_tensors(const LlamaConfig& c, Rng& rng, bool verbose) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  shapes.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    shapes.push_back({p + "input_layernorm.weight", {c.hidden_size}});
    shapes.push_back({p + "mlp.down_proj.weight", {c.hidden_size, c.intermediate_size}});
    shapes.push_back({p + "mlp.gate_proj.weight", {c.intermediate_size, c.hidden_size}});
    shapes.push_back({p + "mlp.up_proj.weight", {c.intermediate_size, c.hidden_size}});
    shapes.push_back({p + "post_attention_layernorm.weight", {c.hidden_size}});
    shapes.push_back({p + "self_attn.k_proj.weight", {c.kv_dim(), c.hidden_size}});
    shapes.push_back({p + "self_attn.o_proj.weight", {c.hidden_size, c.q_dim()}});
    shapes.push_back({p + "self_attn.q_proj.weight", {c.q_dim(), c.hidden_size}});
    shapes.push_back({p + "self_attn.v_proj.weight", {c.kv_dim(), c.hidden_size}});
  }
  shapes.push_back({"model.norm.weight", {c.hidden_size}});
  if (!c.tie_word_embeddings) shapes.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});

  std::vector<TensorToWrite> tensors;
  const size_t total = shapes.size();
  // The fill callbacks run one after another while the file is written.
  auto progress = std::make_shared<Progress>("writing tensors", static_cast<int64_t>(total), verbose);
  for (size_t i = 0; i < total; ++i) {
    TensorToWrite t{shapes[i].first, DType::BF16, shapes[i].second, {}, {}};
    const bool norm = t.shape.size() == 1;
    t.fill = [&rng, norm, i, progress](std::span<std::byte> bytes) {
      progress->update(static_cast<int64_t>(i) + 1);
      const std::span<BFloat16> values(reinterpret_cast<BFloat16*>(bytes.data()), bytes.size() / 2);
      if (norm) {
        for (BFloat16& v : values) v = to_bf16(1.0f);
      } else {
        fill_normal(values, rng, 0.0, kInitStddev);
      }
    };
    tensors.push_back(std::move(t));
  }
  return tensors;
}

}  // namespace

std::string llama3_special_token(int64_t index) {
  // Llama 3.1 / 3.2 layout; the unnamed slots are reserved tokens numbered in order.
  static const std::map<int64_t, std::string> named = {
      {0, "<|begin_of_text|>"},   {1, "<|end_of_text|>"},   {4, "<|finetune_right_pad_id|>"},
      {6, "<|start_header_id|>"}, {7, "<|end_header_id|>"}, {8, "<|eom_id|>"},
      {9, "<|eot_id|>"},          {10, "<|python_tag|>"}};
  if (const auto it = named.find(index); it != named.end()) return it->second;
  int64_t reserved = 0;  // reserved tokens before this index
  for (int64_t i = 0; i < index; ++i) reserved += named.count(i) ? 0 : 1;
  return fmt::format("<|reserved_special_token_{}|>", reserved);
}

json byte_level_tokenizer_json(int64_t special_offset, int64_t special_count) {
  QLLM_CHECK(special_offset >= 256 && special_count >= 10,
             "synthetic tokenizer: specials must follow the bytes");
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_stand_in(b)] = b;
  const json merges = fill_with_merges(vocab, special_offset);
  json added = json::array();
  for (int64_t i = 0; i < special_count; ++i) {
    const std::string name = llama3_special_token(i);
    vocab[name] = special_offset + i;
    added.push_back({{"id", special_offset + i},
                     {"content", name},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  const std::string bos = llama3_special_token(0);
  const json split = {{"type", "Split"},
                      {"pattern",
                       {{"Regex",
                         "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                         "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                         "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
                      {"behavior", "Isolated"},
                      {"invert", false}};
  const json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}};
  const json template_processing = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair",
       {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
        {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens", {{bos, {{"id", bos}, {"ids", {special_offset}}, {"tokens", {bos}}}}}}};
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {split, byte_level}}}},
      {"post_processor",
       {{"type", "Sequence"},
        {"processors",
         {{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}},
          template_processing}}}},
      {"decoder",
       {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", true},
        {"vocab", vocab},
        {"merges", merges}}}};
}

LlamaConfig write_synthetic_checkpoint(const SynthOptions& o) {
  QLLM_CHECK(o.preset == "llama-3.2-1b" || o.preset == "tiny" || o.preset == "small",
             "--config must be llama-3.2-1b, small or tiny, not '{}'", o.preset);
  QLLM_CHECK(!o.out_dir.empty(), "--out: no output directory given");
  const bool tiny = o.preset != "llama-3.2-1b";  // tiny and small: the 272-token byte-level vocabulary
  LlamaConfig config = o.preset == "tiny"    ? LlamaConfig::tiny()
                       : o.preset == "small" ? LlamaConfig::small()
                                             : LlamaConfig::llama_3_2_1b();
  const fs::path out(o.out_dir);
  std::error_code ec;
  QLLM_CHECK(o.force || !fs::exists(out) || (fs::is_directory(out) && fs::is_empty(out)),
             "--out: '{}' exists and is not an empty directory (it may hold a model); pass --force to "
             "overwrite its checkpoint files",
             o.out_dir);
  fs::create_directories(out, ec);
  QLLM_CHECK(!ec && fs::is_directory(out), "--out: cannot create directory '{}': {}", o.out_dir,
             ec.message());

  if (!o.tokenizer_dir.empty()) {
    copy_tokenizer(o.tokenizer_dir, out, config, /*grow_vocab=*/tiny);
  } else {
    const int64_t offset = tiny ? 256 : 128000;
    write_generated_tokenizer(out, offset, config.vocab_size - offset, config);
  }
  write_json(out / "config.json", config.to_hf_json());
  json generation = {{"bos_token_id", config.bos_token_id},
                     {"do_sample", true},
                     {"eos_token_id", config.eos_token_ids},
                     {"temperature", 0.6},
                     {"top_p", 0.9}};
  if (config.bos_token_id < 0) generation["bos_token_id"] = nullptr;
  write_json(out / "generation_config.json", generation);

  if (o.verbose)
    fmt::print(stderr, "writing {} random bf16 weights (seed {}): {}\n", o.preset, o.seed, config.describe());
  Rng rng(o.seed);
  const std::vector<TensorToWrite> tensors = random_tensors(config, rng, o.verbose);
  // The seed goes into the file's metadata so that a test can regenerate the same checkpoint.
  write_safetensors(
      (out / "model.safetensors").string(), tensors,
      {{"format", "pt"}, {"qllm_synth_preset", o.preset}, {"qllm_synth_seed", std::to_string(o.seed)}});
  if (o.verbose) fmt::print(stderr, "wrote {}\n", (out / "model.safetensors").string());
  return config;
}

}  // namespace qllm
