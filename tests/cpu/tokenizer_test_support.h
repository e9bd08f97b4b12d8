// Helpers of the tokenizer tests: the golden fixtures written by scripts/gen_tokenizer_golden.py, the
// shared tokenizer folders (each loaded once per test program), and a tiny self-contained tokenizer.json.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>

#include "core/utf8.h"
#include "qllm/tokenizer.h"
#include "tests/support/test_util.h"
#include "tokenizer/byte_level.h"

namespace qllm::testing {

// The tokenizers the golden fixtures cover: fixture name and folder inside the shared folder.
struct GoldenTokenizer {
  const char* name;
  const char* folder;
};
inline void PrintTo(const GoldenTokenizer& t, std::ostream* out) {
  *out << t.name;
}  // names in test output
inline const GoldenTokenizer kGoldenTokenizers[] = {
    {"llama3", "tokenizers/llama3"},
    {"proxy-llama-22m", "models/proxy-llama-22m"},
};

inline nlohmann::json load_golden(const std::string& name) {
  const auto path = std::filesystem::path(QLLM_SOURCE_DIR) / "tests/fixtures/tokenizer" / (name + ".json");
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing fixture " << path << " (scripts/gen_tokenizer_golden.py writes it)";
  return nlohmann::json::parse(in);
}

// The folder of a shared tokenizer, or "" when the shared folder is absent (the test then skips).
inline std::string shared_tokenizer_dir(const std::string& folder) {
  const std::string shared = shared_dir();
  return shared.empty() ? std::string() : shared + "/" + folder;
}

// The tokenizer of `dir`, loaded on first use and kept for the rest of the test program: loading Llama 3's
// 128K-token vocabulary costs far more than most tests that use it, and a Tokenizer is immutable (its
// const methods are safe from any thread), so tests can share one. Tests of loading itself, its errors
// included, call Tokenizer::load.
inline const Tokenizer& cached_tokenizer(const std::string& dir) {
  static std::mutex mutex;
  static std::map<std::string, Tokenizer> loaded;  // std::map: references stay valid as it grows
  const std::lock_guard lock(mutex);
  auto it = loaded.find(dir);
  if (it == loaded.end()) it = loaded.emplace(dir, Tokenizer::load(dir)).first;  // a throw caches nothing
  return it->second;
}

#define QLLM_SKIP_WITHOUT_SHARED(dir)                                       \
  do {                                                                      \
    if ((dir).empty())                                                      \
      GTEST_SKIP() << "shared folder not found (set QLLM_SHARED or put it " \
                      "beside the checkout)";                               \
  } while (0)

// The vocabulary string (GPT-2 stand-ins) of raw bytes: "Ġthe" for " the".
inline std::string stand_in_text(std::string_view bytes) {
  std::string text;
  for (const char byte : bytes)
    utf8::append_code_point(text, byte_level::stand_in(static_cast<uint8_t>(byte)));
  return text;
}

// A tiny Llama 3 style tokenizer.json: the 256 byte tokens (ids 0-255), merges building " the" and "he",
// and two special tokens. Tests change fields of it to check how loading fails.
inline nlohmann::json tiny_tokenizer_json() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[stand_in_text(std::string(1, static_cast<char>(b)))] = b;
  vocab["Ġt"] = 256;
  vocab["he"] = 257;
  vocab["Ġthe"] = 258;
  vocab["Ġth"] = 259;
  const nlohmann::json split = {{"type", "Split"},
                                {"pattern",
                                 {{"Regex",
                                   "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                   "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                                   "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
                                {"behavior", "Isolated"},
                                {"invert", false}};
  const nlohmann::json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}};
  auto added = [](int id, const char* content) {
    return nlohmann::json{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
                          {"rstrip", false}, {"normalized", false}, {"special", true}};
  };
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", {added(260, "<|begin_of_text|>"), added(261, "<|eot_id|>")}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {split, byte_level}}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", nlohmann::json::array()},
        {"special_tokens",
         {{"<|begin_of_text|>",
           {{"id", "<|begin_of_text|>"}, {"ids", {260}}, {"tokens", {"<|begin_of_text|>"}}}}}}}},
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
        {"merges", {"Ġ t", "h e", "Ġt h", "Ġt he"}}}},
  };
}

}  // namespace qllm::testing
