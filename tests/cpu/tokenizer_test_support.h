// Helpers of the tokenizer tests: the golden fixtures written by scripts/gen_tokenizer_golden.py, the
// shared tokenizer folders (each loaded once per test program), and a tiny self-contained tokenizer.json.
#pragma once

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

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

// SHA-256 (FIPS 180-4), enough to fingerprint a test's output.
class Sha256 {
 public:
  void update(const uint8_t* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      block_[fill_++] = data[i];
      if (fill_ == 64) compress();
    }
    length_ += n;
  }
  std::string hex_digest() {
    const uint64_t bits = length_ * 8;
    const uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (fill_ != 56) update(&zero, 1);
    for (int i = 7; i >= 0; --i) {
      const auto byte = static_cast<uint8_t>(bits >> (8 * i));
      update(&byte, 1);
    }
    std::string hex;
    for (const uint32_t word : state_) hex += fmt::format("{:08x}", word);
    return hex;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void compress() {
    static constexpr std::array<uint32_t, 64> k = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    std::array<uint32_t, 64> w{};
    for (int i = 0; i < 16; ++i) {
      w[i] = (uint32_t{block_[4 * i]} << 24) | (uint32_t{block_[4 * i + 1]} << 16) |
             (uint32_t{block_[4 * i + 2]} << 8) | block_[4 * i + 3];
    }
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::array<uint32_t, 8> v = state_;
    for (int i = 0; i < 64; ++i) {
      const uint32_t s1 = rotr(v[4], 6) ^ rotr(v[4], 11) ^ rotr(v[4], 25);
      const uint32_t choose = (v[4] & v[5]) ^ (~v[4] & v[6]);
      const uint32_t t1 = v[7] + s1 + choose + k[i] + w[i];
      const uint32_t s0 = rotr(v[0], 2) ^ rotr(v[0], 13) ^ rotr(v[0], 22);
      const uint32_t majority = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
      v = {t1 + s0 + majority, v[0], v[1], v[2], v[3] + t1, v[4], v[5], v[6]};
    }
    for (int i = 0; i < 8; ++i) state_[i] += v[i];
    fill_ = 0;
  }

  std::array<uint32_t, 8> state_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<uint8_t, 64> block_{};
  size_t fill_ = 0;
  uint64_t length_ = 0;
};

inline std::string sha256_u32le(const std::vector<int32_t>& ids) {
  Sha256 sha;
  for (const int32_t id : ids) {
    const auto v = static_cast<uint32_t>(id);
    const uint8_t bytes[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8),
                              static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 24)};
    sha.update(bytes, 4);
  }
  return sha.hex_digest();
}

}  // namespace qllm::testing
