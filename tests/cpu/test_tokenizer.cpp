// The tokenizer against Hugging Face `tokenizers`: exact ids and decoded strings of the golden fixtures
// (scripts/gen_tokenizer_golden.py) for the Llama 3 tokenizer and the proxy model's, streaming decode,
// special tokens, and the byte-level building blocks.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "qllm/error.h"
#include "qllm/tokenizer.h"
#include "tests/cpu/tokenizer_test_support.h"

namespace qllm {
namespace {

using testing::kGoldenTokenizers;

std::vector<int32_t> ids_of(const nlohmann::json& array) {
  return array.get<std::vector<int32_t>>();
}

// Pushes every id through a StreamDecoder and returns the concatenated pieces plus the flush.
std::string stream_decode(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, bool skip_special) {
  Tokenizer::StreamDecoder stream(tokenizer, skip_special);
  std::string text;
  for (const int32_t id : ids) text += stream.push(id);
  return text + stream.flush();
}

class TokenizerGolden : public ::testing::TestWithParam<testing::GoldenTokenizer> {
 protected:
  void SetUp() override {
    dir_ = testing::shared_tokenizer_dir(GetParam().folder);
    QLLM_SKIP_WITHOUT_SHARED(dir_);
    golden_ = testing::load_golden(GetParam().name);
    // The tests loop over these: an empty or missing list must fail, not pass with nothing checked.
    ASSERT_FALSE(golden_["cases"].empty()) << "no \"cases\" in the " << GetParam().name << " fixture";
    ASSERT_FALSE(golden_["decode_cases"].empty())
        << "no \"decode_cases\" in the " << GetParam().name << " fixture";
  }
  std::string dir_;
  nlohmann::json golden_;
};

TEST_P(TokenizerGolden, EncodeMatchesHuggingFace) {
  const Tokenizer& tokenizer = testing::cached_tokenizer(dir_);
  EXPECT_EQ(tokenizer.vocab_size(), golden_["vocab_size"].get<size_t>());
  for (const auto& c : golden_["cases"]) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE("text: " + nlohmann::json(text).dump());
    EXPECT_EQ(tokenizer.encode(text, false), ids_of(c["ids"]));
    EXPECT_EQ(tokenizer.encode(text, true), ids_of(c["ids_with_special_tokens"]));
  }
}

TEST_P(TokenizerGolden, DecodeMatchesHuggingFace) {
  const Tokenizer& tokenizer = testing::cached_tokenizer(dir_);
  for (const auto& c : golden_["cases"]) {
    SCOPED_TRACE("text: " + c["text"].dump());
    const auto ids = ids_of(c["ids_with_special_tokens"]);
    EXPECT_EQ(tokenizer.decode(ids, false), c["decoded"].get<std::string>());
    EXPECT_EQ(tokenizer.decode(ids, true), c["decoded_skip_special"].get<std::string>());
    // Without special tokens added, decoding gives the text back (byte-level BPE loses nothing).
    EXPECT_EQ(tokenizer.decode(ids_of(c["ids"]), false), c["text"].get<std::string>());
  }
  for (const auto& c : golden_["decode_cases"]) {  // ids that cut or corrupt UTF-8: U+FFFD as HF writes it
    SCOPED_TRACE("ids: " + c["ids"].dump());
    EXPECT_EQ(tokenizer.decode(ids_of(c["ids"]), false), c["decoded"].get<std::string>());
  }
}

TEST_P(TokenizerGolden, StreamingDecodeEqualsDecode) {
  const Tokenizer& tokenizer = testing::cached_tokenizer(dir_);
  for (const auto& c : golden_["cases"]) {
    SCOPED_TRACE("text: " + c["text"].dump());
    const auto ids = ids_of(c["ids_with_special_tokens"]);
    EXPECT_EQ(stream_decode(tokenizer, ids, false), c["decoded"].get<std::string>());
    EXPECT_EQ(stream_decode(tokenizer, ids, true), c["decoded_skip_special"].get<std::string>());
  }
  for (const auto& c : golden_["decode_cases"]) {
    SCOPED_TRACE("ids: " + c["ids"].dump());
    EXPECT_EQ(stream_decode(tokenizer, ids_of(c["ids"]), false), c["decoded"].get<std::string>());
  }
}

// A 4-byte character spread over four single-byte tokens comes out whole, with the last one.
TEST_P(TokenizerGolden, StreamingHoldsBackIncompleteCharacters) {
  const Tokenizer& tokenizer = testing::cached_tokenizer(dir_);
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600
  std::vector<int32_t> ids;
  for (const char byte : emoji) {
    const auto id = tokenizer.token_id(testing::stand_in_text(std::string(1, byte)));
    ASSERT_TRUE(id.has_value());
    ids.push_back(*id);
  }
  const auto euro = tokenizer.encode("\xE2\x82\xAC!", false);  // whatever tokens, decoded whole
  Tokenizer::StreamDecoder stream(tokenizer, true);
  EXPECT_EQ(stream.push(ids[0]), "");
  EXPECT_EQ(stream.push(ids[1]), "");
  EXPECT_EQ(stream.push(ids[2]), "");
  EXPECT_EQ(stream.push(ids[3]), emoji);
  EXPECT_EQ(stream.push(*tokenizer.token_id("<|eot_id|>")), "");  // skipped special token
  std::string tail;
  for (const int32_t id : euro) tail += stream.push(id);
  EXPECT_EQ(tail + stream.flush(), "\xE2\x82\xAC!");

  // An incomplete character at the end is flushed as U+FFFD; the decoder then starts afresh.
  EXPECT_EQ(stream.push(ids[0]), "");
  EXPECT_EQ(stream.push(ids[1]), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.flush(), "");
  // An incomplete character followed by something that cannot continue it is replaced at once.
  EXPECT_EQ(stream.push(ids[0]), "");
  EXPECT_EQ(stream.push(*tokenizer.token_id("a")),
            "\xEF\xBF\xBD"
            "a");
}

TEST_P(TokenizerGolden, SpecialTokens) {
  const Tokenizer& tokenizer = testing::cached_tokenizer(dir_);
  const bool llama3 = std::string(GetParam().name) == "llama3";
  const int32_t offset = llama3 ? 128000 : 0;  // Llama 3 puts its special tokens after 128000 ordinary ones
  EXPECT_EQ(tokenizer.token_id("<|begin_of_text|>"), offset);
  EXPECT_EQ(tokenizer.bos_id(), offset);
  const auto eot = tokenizer.token_id("<|eot_id|>");
  ASSERT_TRUE(eot.has_value());
  EXPECT_EQ(*eot, llama3 ? 128009 : 4);
  EXPECT_TRUE(tokenizer.is_special(*eot));
  EXPECT_EQ(tokenizer.token_text(*eot), "<|eot_id|>");
  EXPECT_EQ(tokenizer.encode("hi<|eot_id|>there", false).at(1), *eot);
  EXPECT_FALSE(tokenizer.token_id("<|no_such_token|>").has_value());

  const auto the = tokenizer.encode(" the", false);
  ASSERT_EQ(the.size(), 1u);
  EXPECT_EQ(tokenizer.token_text(the[0]), "Ġthe");
  EXPECT_EQ(tokenizer.token_bytes(the[0]), " the");
  EXPECT_FALSE(tokenizer.is_special(the[0]));
  EXPECT_THROW(tokenizer.token_text(static_cast<int32_t>(tokenizer.vocab_size())), Error);
  EXPECT_THROW(tokenizer.decode(std::vector<int32_t>{-1}, false), Error);
}

TEST_P(TokenizerGolden, InvalidUtf8InputIsAnErrorWithTheOffset) {
  const Tokenizer& tokenizer = testing::cached_tokenizer(dir_);
  for (const std::string& bad :
       {std::string("abc\xFF"
                    "def"),
        std::string("abc\xC3"), std::string("abc\xED\xA0\x80"), std::string("abc\xC0\xAF")}) {
    try {
      tokenizer.encode(bad, true);
      ADD_FAILURE() << "no error for invalid UTF-8 at offset 3";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("invalid UTF-8 at byte offset 3"), std::string::npos) << e.what();
    }
  }
}

TEST_P(TokenizerGolden, CopiesShareTheModelAndAreUsableFromThreads) {
  const Tokenizer& tokenizer = testing::cached_tokenizer(dir_);
  const Tokenizer copy = tokenizer;
  const auto& cases = golden_["cases"];
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const Tokenizer& tok = t % 2 == 0 ? tokenizer : copy;
      for (const auto& c : cases)
        mismatches[t] += tok.encode(c["text"].get<std::string>(), false) != ids_of(c["ids"]);
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

INSTANTIATE_TEST_SUITE_P(Shared, TokenizerGolden, ::testing::ValuesIn(kGoldenTokenizers),
                         [](const auto& info) {
                           std::string name = info.param.name;
                           std::erase(name, '-');
                           return name;
                         });

TEST(TokenizerByteLevel, StandInTable) {
  EXPECT_EQ(byte_level::stand_in(' '), 0x120u);   // "Ġ"
  EXPECT_EQ(byte_level::stand_in('\n'), 0x10Au);  // "Ċ"
  EXPECT_EQ(byte_level::stand_in('a'), static_cast<uint32_t>('a'));
  EXPECT_EQ(byte_level::stand_in(0xAD), 0x143u);  // soft hyphen: the last of the 68 moved bytes
  for (int b = 0; b < 256; ++b)
    EXPECT_EQ(byte_level::byte_of(byte_level::stand_in(static_cast<uint8_t>(b))), b);
  EXPECT_FALSE(byte_level::byte_of(0x144).has_value());
  EXPECT_EQ(byte_level::decode_token("ĠhelloĊ"), " hello\n");
  EXPECT_EQ(byte_level::decode_token("\xE2\x82\xAC"), "\xE2\x82\xAC");  // outside the table: as written
}

TEST(TokenizerUtf8, ValidationAndLossyDecoding) {
  EXPECT_FALSE(utf8::first_invalid_byte("h\xC3\xA9llo \xF0\x9F\x98\x80").has_value());
  EXPECT_EQ(utf8::first_invalid_byte("ab\x80"), 2u);
  EXPECT_EQ(utf8::first_invalid_byte("\xF4\x90\x80\x80"), 0u);  // past U+10FFFF
  EXPECT_EQ(utf8::to_valid_lossy("a\xF0\x9F\x98"
                                 "b"),
            "a\xEF\xBF\xBD"
            "b");  // one U+FFFD per maximal part
  EXPECT_EQ(utf8::to_valid_lossy("\xE0\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8::incomplete_suffix_length("ab\xF0\x9F\x98"), 3u);
  EXPECT_EQ(utf8::incomplete_suffix_length("ab\xF0\x9F\x98\x80"), 0u);
  EXPECT_EQ(utf8::incomplete_suffix_length("ab\xFF"), 0u);    // invalid, not incomplete: nothing to wait for
  EXPECT_EQ(utf8::incomplete_suffix_length("\xE0\x80"), 0u);  // E0 80 can never become valid
}

}  // namespace
}  // namespace qllm
