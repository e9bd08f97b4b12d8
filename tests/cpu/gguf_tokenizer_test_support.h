// Helpers of the GGUF tokenizer tests: the fixtures written by scripts/gen_gguf_tokenizer_fixtures.sh, the
// vocabularies they name (a GGUF file or Llama 3's tokenizer.json from the shared folder, or the vocabulary
// stored in the fixture), and a tiny byte-level vocabulary that tests change to check how loading fails.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "core/file_io.h"
#include "core/gguf.h"
#include "qllm/tokenizer.h"
#include "tests/cpu/gguf_test_support.h"
#include "tests/cpu/tokenizer_test_support.h"
#include "tokenizer/gguf_vocab.h"

namespace qllm::testing {

inline nlohmann::json load_gguf_fixture(const std::string& name) {
  const auto path =
      std::filesystem::path(QLLM_SOURCE_DIR) / "tests/fixtures/gguf_tokenizer" / (name + ".json");
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing fixture " << path
                         << " (scripts/gen_gguf_tokenizer_fixtures.sh writes it)";
  return nlohmann::json::parse(in);
}

// The fields of a vocabulary written in JSON (the fixture's "vocab" of the SentencePiece model), with the
// key names of GgufVocab.
inline void fill_vocab_fields(const nlohmann::json& source, GgufVocab& vocab) {
  auto optional_id = [&](const char* key, std::optional<uint32_t>& field) {
    if (source.contains(key)) field = source[key].get<uint32_t>();
  };
  auto optional_flag = [&](const char* key, std::optional<bool>& field) {
    if (source.contains(key)) field = source[key].get<bool>();
  };
  if (source.contains("model")) vocab.model = source["model"];
  if (source.contains("pre")) vocab.pre = source["pre"];
  if (source.contains("tokens")) vocab.tokens = source["tokens"].get<std::vector<std::string>>();
  if (source.contains("scores")) vocab.scores = source["scores"].get<std::vector<float>>();
  if (source.contains("token_type")) vocab.token_type = source["token_type"].get<std::vector<int32_t>>();
  if (source.contains("merges")) vocab.merges = source["merges"].get<std::vector<std::string>>();
  optional_id("bos_id", vocab.bos_id);
  optional_id("eos_id", vocab.eos_id);
  optional_id("unk_id", vocab.unk_id);
  optional_id("pad_id", vocab.pad_id);
  optional_flag("add_bos_token", vocab.add_bos_token);
  optional_flag("add_eos_token", vocab.add_eos_token);
  optional_flag("add_space_prefix", vocab.add_space_prefix);
}

// Llama 3's tokenizer.json as llama.cpp's convert_hf_to_gguf.py writes its vocabulary: one token list by id,
// added special tokens control, other added tokens user-defined, missing ids "[PAD<id>]" unused.
inline GgufVocab vocab_from_tokenizer_json(const std::filesystem::path& file) {
  const nlohmann::json t = read_json_file(file);
  std::vector<std::string> by_id;
  std::vector<int32_t> types;
  auto place = [&](size_t id, const std::string& text, GgufTokenType type) {
    if (id >= by_id.size()) {
      by_id.resize(id + 1);
      types.resize(id + 1, -1);
    }
    by_id[id] = text;
    types[id] = static_cast<int32_t>(type);
  };
  for (const auto& [text, id] : t["model"]["vocab"].items())
    place(id.get<size_t>(), text, GgufTokenType::Normal);
  for (const auto& added : t["added_tokens"]) {
    place(added["id"].get<size_t>(), added["content"],
          added["special"].get<bool>() ? GgufTokenType::Control : GgufTokenType::UserDefined);
  }
  for (size_t id = 0; id < by_id.size(); ++id) {
    if (types[id] < 0) {
      by_id[id] = "[PAD" + std::to_string(id) + "]";
      types[id] = static_cast<int32_t>(GgufTokenType::Unused);
    }
  }
  GgufVocab vocab;
  vocab.origin = file.string();
  vocab.model = "gpt2";
  vocab.tokens = std::move(by_id);
  vocab.token_type = std::move(types);
  for (const auto& merge : t["model"]["merges"]) {
    vocab.merges.push_back(merge.is_string()
                               ? merge.get<std::string>()
                               : merge[0].get<std::string>() + " " + merge[1].get<std::string>());
  }
  return vocab;
}

// The vocabulary a fixture's "vocab" names; nullopt when it needs the shared folder and that is absent.
inline std::optional<GgufVocab> fixture_vocab(const nlohmann::json& source) {
  GgufVocab vocab;
  if (source.contains("gguf") || source.contains("tokenizer_json")) {
    const std::string shared = shared_dir();
    if (shared.empty()) return std::nullopt;
    if (source.contains("gguf")) {
      vocab = read_gguf_vocab(GgufFile::open(shared + "/" + source["gguf"].get<std::string>()));
    } else {
      vocab = vocab_from_tokenizer_json(shared + "/" + source["tokenizer_json"].get<std::string>());
    }
  } else {
    vocab.origin = "fixture vocabulary";
  }
  fill_vocab_fields(source, vocab);  // the fixture's own fields override (e.g. "pre": "gpt-2")
  return vocab;
}

// A tiny "gpt2" vocabulary: the 256 byte tokens (ids 0-255), merges building " the", and control tokens
// <|bos|> (260) and <|eos|> (261); pre-tokenizer gpt-2, BOS added.
inline GgufVocab tiny_gguf_vocab() {
  GgufVocab vocab;
  vocab.origin = "tiny.gguf";
  vocab.model = "gpt2";
  vocab.pre = "gpt-2";
  for (int b = 0; b < 256; ++b) vocab.tokens.push_back(stand_in_text(std::string(1, static_cast<char>(b))));
  for (const char* text : {"Ġt", "he", "Ġthe", "Ġth", "<|bos|>", "<|eos|>"}) vocab.tokens.push_back(text);
  vocab.token_type.assign(vocab.tokens.size(), static_cast<int32_t>(GgufTokenType::Normal));
  vocab.token_type[260] = vocab.token_type[261] = static_cast<int32_t>(GgufTokenType::Control);
  vocab.merges = {"Ġ t", "h e", "Ġt h", "Ġt he"};
  vocab.bos_id = 260;
  vocab.eos_id = 261;
  vocab.add_bos_token = true;
  return vocab;
}

// The metadata of a small Llama GGUF model with tiny_gguf_vocab()'s tokenizer (context 256); the test adds
// its tensors (and any other keys).
struct TinyLlamaGgufShape {
  uint32_t layers = 1, hidden = 64, ffn = 128, heads = 4, kv_heads = 2;
};
inline GgufBuilder& add_tiny_llama_keys(GgufBuilder& b, const TinyLlamaGgufShape& s) {
  const GgufVocab vocab = tiny_gguf_vocab();
  return b.kv_string("general.architecture", "llama")
      .kv<uint32_t>("llama.block_count", s.layers)
      .kv<uint32_t>("llama.embedding_length", s.hidden)
      .kv<uint32_t>("llama.feed_forward_length", s.ffn)
      .kv<uint32_t>("llama.attention.head_count", s.heads)
      .kv<uint32_t>("llama.attention.head_count_kv", s.kv_heads)
      .kv<uint32_t>("llama.context_length", 256)
      .kv_string("tokenizer.ggml.model", vocab.model)
      .kv_string("tokenizer.ggml.pre", vocab.pre)
      .kv_string_array("tokenizer.ggml.tokens", vocab.tokens)
      .kv_array("tokenizer.ggml.token_type", vocab.token_type)
      .kv_string_array("tokenizer.ggml.merges", vocab.merges)
      .kv<uint32_t>("tokenizer.ggml.bos_token_id", *vocab.bos_id)
      .kv<uint32_t>("tokenizer.ggml.eos_token_id", *vocab.eos_id);
}

// A GGUF file image holding `vocab`'s tokenizer.ggml.* keys (absent optional fields and empty arrays left
// out), for reading it back with read_gguf_vocab.
inline std::vector<std::byte> gguf_image_of(const GgufVocab& vocab) {
  GgufBuilder b;
  b.kv_string("general.architecture", "llama");
  b.kv_string("tokenizer.ggml.model", vocab.model);
  if (!vocab.pre.empty()) b.kv_string("tokenizer.ggml.pre", vocab.pre);
  b.kv_string_array("tokenizer.ggml.tokens", vocab.tokens);
  if (!vocab.scores.empty()) b.kv_array("tokenizer.ggml.scores", vocab.scores);
  if (!vocab.token_type.empty()) b.kv_array("tokenizer.ggml.token_type", vocab.token_type);
  if (!vocab.merges.empty()) b.kv_string_array("tokenizer.ggml.merges", vocab.merges);
  const std::pair<const char*, std::optional<uint32_t>> ids[] = {
      {"tokenizer.ggml.bos_token_id", vocab.bos_id},
      {"tokenizer.ggml.eos_token_id", vocab.eos_id},
      {"tokenizer.ggml.unknown_token_id", vocab.unk_id},
      {"tokenizer.ggml.padding_token_id", vocab.pad_id}};
  for (const auto& [key, id] : ids) {
    if (id) b.kv(key, *id);
  }
  const std::pair<const char*, std::optional<bool>> flags[] = {
      {"tokenizer.ggml.add_bos_token", vocab.add_bos_token},
      {"tokenizer.ggml.add_eos_token", vocab.add_eos_token},
      {"tokenizer.ggml.add_space_prefix", vocab.add_space_prefix}};
  for (const auto& [key, flag] : flags) {
    if (flag) b.kv(key, *flag);
  }
  return b.build();
}

}  // namespace qllm::testing
