// GGUF tokenizers against llama.cpp's llama-tokenize (fixtures of scripts/gen_gguf_tokenizer_fixtures.sh):
// SmolLM2's vocabulary (gpt2, pre smollm), the same with pre gpt-2, Llama 3's (llama-bpe) and a tiny
// SentencePiece model (llama): ids on tricky strings and on the whole WikiText-2 test text, decoding back
// to the text, streaming decode. Then behaviours llama.cpp has and HF does not.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/file_io.h"
#include "core/gguf.h"
#include "qllm/tokenizer.h"
#include "tests/cpu/gguf_tokenizer_test_support.h"

namespace qllm {
namespace {

const char* const kFixtures[] = {"smollm", "gpt2", "llama_bpe", "spm"};

// The tokenizer of a fixture, built once per test program; nullptr when it needs the absent shared folder.
const Tokenizer* fixture_tokenizer(const std::string& name) {
  static std::mutex mutex;
  static std::map<std::string, std::optional<Tokenizer>> built;
  const std::lock_guard lock(mutex);
  auto it = built.find(name);
  if (it == built.end()) {
    const std::optional<GgufVocab> vocab = testing::fixture_vocab(testing::load_gguf_fixture(name)["vocab"]);
    it = built
             .emplace(name,
                      vocab ? std::optional<Tokenizer>(Tokenizer::from_gguf_vocab(*vocab)) : std::nullopt)
             .first;
  }
  return it->second ? &*it->second : nullptr;
}

#define QLLM_SKIP_WITHOUT_VOCAB(tokenizer) \
  if ((tokenizer) == nullptr) GTEST_SKIP() << "the vocabulary needs the shared folder, which is absent"

std::string stream_decode(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, bool skip_special) {
  Tokenizer::StreamDecoder stream(tokenizer, skip_special);
  std::string text;
  for (const int32_t id : ids) text += stream.push(id);
  return text + stream.flush();
}

// Whether each byte of `text` has a token (a byte-level one, or SentencePiece's <0xXX>): if not, llama.cpp
// drops it and the text cannot come back from its ids.
bool every_byte_has_a_token(const Tokenizer& tokenizer, std::string_view text) {
  return std::all_of(text.begin(), text.end(), [&](char byte) {
    return tokenizer.token_id(testing::stand_in_text(std::string(1, byte))) ||
           tokenizer.token_id(fmt::format("<0x{:02X}>", static_cast<uint8_t>(byte)));
  });
}

class GgufTokenizerFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufTokenizerFixture, SameIdsAsLlamaCpp) {
  const Tokenizer* tokenizer = fixture_tokenizer(GetParam());
  QLLM_SKIP_WITHOUT_VOCAB(tokenizer);
  const nlohmann::json fixture = testing::load_gguf_fixture(GetParam());
  ASSERT_GE(fixture["cases"].size(), 30u);
  for (const auto& c : fixture["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE("text: \"" + text + "\"");
    EXPECT_EQ(tokenizer->encode(text, c["add_special"].get<bool>()), c["ids"].get<std::vector<int32_t>>());
  }
}

// Text without special tokens (and whose bytes all have tokens) decodes back to itself; streamed token by
// token, as a whole.
TEST_P(GgufTokenizerFixture, DecodesBackToTheText) {
  const Tokenizer* tokenizer = fixture_tokenizer(GetParam());
  QLLM_SKIP_WITHOUT_VOCAB(tokenizer);
  int checked = 0;
  const nlohmann::json fixture = testing::load_gguf_fixture(GetParam());
  for (const auto& c : fixture["cases"]) {
    const std::string text = c["text"];
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE("text: \"" + text + "\"");
    for (const bool skip : {false, true})
      EXPECT_EQ(stream_decode(*tokenizer, ids, skip), tokenizer->decode(ids, skip));
    const bool has_special =
        std::any_of(ids.begin(), ids.end(), [&](int32_t id) { return tokenizer->is_special(id); });
    if (has_special || !every_byte_has_a_token(*tokenizer, text)) continue;
    EXPECT_EQ(tokenizer->decode(ids, false), text);
    ++checked;
  }
  EXPECT_GE(checked, 25);
}

TEST_P(GgufTokenizerFixture, WikiTextSameIdsAsLlamaCpp) {
  const Tokenizer* tokenizer = fixture_tokenizer(GetParam());
  QLLM_SKIP_WITHOUT_VOCAB(tokenizer);
  const std::string shared = testing::shared_dir();
  QLLM_SKIP_WITHOUT_SHARED(shared);
  const nlohmann::json golden = testing::load_gguf_fixture(GetParam())["wikitext"];
  const std::string text = read_text_file(shared + "/" + golden["file"].get<std::string>());

  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tokenizer->encode(text, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ TIMING   ] %s: WikiText-2 test, %zu bytes -> %zu ids in %.3f s (%.2f MB/s)\n", GetParam(),
              text.size(), ids.size(), seconds, text.size() / seconds / 1e6);

  EXPECT_EQ(ids.size(), golden["count"].get<size_t>());
  const auto first = golden["first_ids"].get<std::vector<int32_t>>();
  ASSERT_GE(ids.size(), first.size());
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(first.size())), first);
  EXPECT_EQ(testing::sha256_u32le(ids), golden["sha256_u32le"].get<std::string>());
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, GgufTokenizerFixture, ::testing::ValuesIn(kFixtures));

// SmolLM2's file: 49,152 tokens, BOS 1 not added, the 17 control tokens special.
TEST(GgufTokenizer, SmolLmVocabulary) {
  const Tokenizer* tokenizer = fixture_tokenizer("smollm");
  QLLM_SKIP_WITHOUT_VOCAB(tokenizer);
  EXPECT_EQ(tokenizer->vocab_size(), 49152u);
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->token_id("<|im_start|>"), 1);
  EXPECT_TRUE(tokenizer->is_special(2));
  EXPECT_FALSE(tokenizer->is_special(17));
  EXPECT_EQ(tokenizer->encode("Hi", true), tokenizer->encode("Hi", false));
  const std::vector<int32_t> chat = tokenizer->encode("<|im_start|>user\nHi<|im_end|>", false);
  ASSERT_GE(chat.size(), 3u);
  EXPECT_EQ(chat.front(), 1);
  EXPECT_EQ(chat.back(), 2);
  EXPECT_EQ(tokenizer->decode(chat, true), "user\nHi");
  const Tokenizer loaded = Tokenizer::load(
      testing::shared_dir() + "/" + testing::load_gguf_fixture("smollm")["vocab"]["gguf"].get<std::string>());
  EXPECT_EQ(loaded.encode("<|im_start|>user\nHi<|im_end|>", false), chat);
}

// read_gguf_vocab gives back every tokenizer.ggml key written, and Tokenizer::load takes a .gguf file.
TEST(GgufTokenizer, ReadsTheVocabularyOfAGgufFile) {
  GgufVocab written = testing::tiny_gguf_vocab();
  written.scores.assign(written.tokens.size(), -1.5f);
  written.unk_id = 7;
  written.pad_id = 261;
  written.add_eos_token = false;
  written.add_space_prefix = false;
  const std::vector<std::byte> image = testing::gguf_image_of(written);
  const GgufVocab read = read_gguf_vocab(GgufFile::parse(image, "tiny.gguf"));
  EXPECT_EQ(read.origin, "tiny.gguf");
  EXPECT_EQ(read.model, written.model);
  EXPECT_EQ(read.pre, written.pre);
  EXPECT_EQ(read.tokens, written.tokens);
  EXPECT_EQ(read.scores, written.scores);
  EXPECT_EQ(read.token_type, written.token_type);
  EXPECT_EQ(read.merges, written.merges);
  EXPECT_EQ(read.bos_id, written.bos_id);
  EXPECT_EQ(read.eos_id, written.eos_id);
  EXPECT_EQ(read.unk_id, written.unk_id);
  EXPECT_EQ(read.pad_id, written.pad_id);
  EXPECT_EQ(read.add_bos_token, written.add_bos_token);
  EXPECT_EQ(read.add_eos_token, written.add_eos_token);
  EXPECT_EQ(read.add_space_prefix, written.add_space_prefix);

  const GgufVocab sparse =
      read_gguf_vocab(GgufFile::parse(testing::gguf_image_of(testing::tiny_gguf_vocab()), "t"));
  EXPECT_TRUE(sparse.scores.empty());
  EXPECT_FALSE(sparse.unk_id.has_value());
  EXPECT_FALSE(sparse.add_eos_token.has_value());

  const testing::TempDir dir;
  const std::string bytes(reinterpret_cast<const char*>(image.data()), image.size());
  const Tokenizer tokenizer = Tokenizer::load(dir.write("tiny.gguf", bytes));
  EXPECT_EQ(tokenizer.encode(" the", true), (std::vector<int32_t>{260, 258}));
  EXPECT_EQ(tokenizer.vocab_size(), 262u);
}

// The SentencePiece fixture: BOS first with special tokens, a space prefix after each special token, byte
// fallback for characters that are not tokens, "▁" decoded as a space.
TEST(GgufTokenizer, SentencePieceBehaviour) {
  const Tokenizer& tokenizer = *fixture_tokenizer("spm");
  const std::vector<int32_t> with_bos = tokenizer.encode("Hello", true);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos.front(), tokenizer.bos_id());
  EXPECT_EQ(std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()), tokenizer.encode("Hello", false));
  EXPECT_EQ(tokenizer.decode(with_bos, true), "Hello");

  const std::vector<int32_t> snowman = tokenizer.encode("\xE2\x98\x83", false);  // U+2603, not a token
  ASSERT_EQ(snowman.size(), 4u);  // "▁" and the character's three bytes
  EXPECT_EQ(tokenizer.token_text(snowman[1]), "<0xE2>");
  EXPECT_EQ(tokenizer.token_bytes(snowman[1]), "\xE2");
  EXPECT_EQ(tokenizer.decode(snowman, false), "\xE2\x98\x83");

  // Text after a special token is encoded as at the start: with a space prefix.
  const auto eos = tokenizer.token_id("</s>");
  ASSERT_TRUE(eos.has_value());
  std::vector<int32_t> expected = tokenizer.encode("a b", false);
  expected.push_back(*eos);
  for (const int32_t id : tokenizer.encode("a b", false)) expected.push_back(id);
  EXPECT_EQ(tokenizer.encode("a b</s>a b", false), expected);
}

// llama.cpp matches special tokens one after the other, longest first, not leftmost-longest as HF does:
// with "ab" and "bcd" both control tokens, "abcd" is "a" and "bcd".
TEST(GgufTokenizer, SpecialTokensLongestFirst) {
  GgufVocab vocab = testing::tiny_gguf_vocab();
  vocab.tokens[260] = "ab";
  vocab.tokens[261] = "bcd";
  const Tokenizer tokenizer = Tokenizer::from_gguf_vocab(vocab);
  EXPECT_EQ(tokenizer.encode("abcd", false), (std::vector<int32_t>{'a', 261}));
  EXPECT_EQ(tokenizer.encode("abab", false), (std::vector<int32_t>{260, 260}));
}

// Byte-level BPE with the tiny vocabulary: merges, BOS from add_bos_token, EOS from add_eos_token, unused
// tokens written as nothing, user-defined tokens matched in text but not skipped as special.
TEST(GgufTokenizer, TinyByteLevelVocabulary) {
  GgufVocab vocab = testing::tiny_gguf_vocab();
  EXPECT_EQ(Tokenizer::from_gguf_vocab(vocab).encode(" the", true), (std::vector<int32_t>{260, 258}));
  vocab.add_bos_token = false;
  vocab.add_eos_token = true;
  vocab.token_type[259] = static_cast<int32_t>(GgufTokenType::UserDefined);  // "Ġth"
  vocab.token_type[257] = static_cast<int32_t>(GgufTokenType::Unused);       // "he"
  const Tokenizer tokenizer = Tokenizer::from_gguf_vocab(vocab);
  EXPECT_EQ(tokenizer.encode(" the", true), (std::vector<int32_t>{258, 261}));
  EXPECT_EQ(tokenizer.encode("xĠthx", false), (std::vector<int32_t>{'x', 259, 'x'}));
  EXPECT_FALSE(tokenizer.is_special(259));
  EXPECT_TRUE(tokenizer.is_special(261));
  EXPECT_EQ(tokenizer.decode(std::vector<int32_t>{259, 257, 261}, true), "Ġth");
  EXPECT_EQ(tokenizer.decode(std::vector<int32_t>{259, 257, 261}, false), "Ġth<|eos|>");
}

// Text that spells an end-of-generation marker is a control token whatever its token_type says, as in
// llama.cpp.
TEST(GgufTokenizer, EndOfGenerationTextsAreControl) {
  GgufVocab vocab = testing::tiny_gguf_vocab();
  vocab.tokens[261] = "<|im_end|>";
  vocab.token_type[261] = static_cast<int32_t>(GgufTokenType::Normal);
  const Tokenizer tokenizer = Tokenizer::from_gguf_vocab(vocab);
  EXPECT_TRUE(tokenizer.is_special(261));
  EXPECT_EQ(tokenizer.encode("a<|im_end|>", false), (std::vector<int32_t>{'a', 261}));
}

}  // namespace
}  // namespace qllm
