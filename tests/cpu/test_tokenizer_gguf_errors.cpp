// Malformed or unsupported GGUF vocabularies are refused with a qllm::Error naming the origin and the
// tokenizer.ggml key (and index); none crashes.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "core/gguf.h"
#include "qllm/error.h"
#include "qllm/tokenizer.h"
#include "tests/cpu/gguf_tokenizer_test_support.h"

namespace qllm {
namespace {

// The error message of building the tiny vocabulary changed by `change`.
std::string error_with(const std::function<void(GgufVocab&)>& change) {
  GgufVocab vocab = testing::tiny_gguf_vocab();
  change(vocab);
  return testing::error_of([&] { Tokenizer::from_gguf_vocab(vocab); });
}

#define EXPECT_MESSAGE_HAS(message, part) EXPECT_NE((message).find(part), std::string::npos) << (message)

TEST(GgufTokenizerErrors, TinyVocabularyLoads) {
  EXPECT_EQ(error_with([](GgufVocab&) {}), "no error");
}

TEST(GgufTokenizerErrors, UnsupportedModelAndPreTokenizer) {
  const std::string model = error_with([](GgufVocab& v) { v.model = "bert"; });
  EXPECT_MESSAGE_HAS(model, "tiny.gguf: tokenizer.ggml.model");
  EXPECT_MESSAGE_HAS(model, "\"bert\"");
  const std::string pre = error_with([](GgufVocab& v) { v.pre = "qwen2"; });
  EXPECT_MESSAGE_HAS(pre, "tokenizer.ggml.pre");
  EXPECT_MESSAGE_HAS(pre, "\"qwen2\"");
  for (const char* supported : {"\"llama-bpe\"", "\"smollm\"", "\"gpt-2\""})
    EXPECT_MESSAGE_HAS(pre, supported);
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.pre.clear(); }), "unsupported pre-tokenizer \"\"");
}

TEST(GgufTokenizerErrors, SizesMustAgree) {
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.tokens.clear(); }), "tokenizer.ggml.tokens: is empty");
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.scores.assign(3, 0.0f); }),
                     "tokenizer.ggml.scores: has 3 entries for 262 tokens");
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.token_type.pop_back(); }),
                     "tokenizer.ggml.token_type: has 261 entries for 262 tokens");
}

TEST(GgufTokenizerErrors, ValuesMustBeInRange) {
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.token_type[7] = 9; }),
                     "tokenizer.ggml.token_type[7]: 9");
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.token_type[7] = -1; }), "tokenizer.ggml.token_type[7]");
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.bos_id = 262; }), "tokenizer.ggml.bos_token_id: 262");
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.eos_id = 4000000000u; }), "tokenizer.ggml.eos_token_id");
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.unk_id = 999; }), "tokenizer.ggml.unknown_token_id");
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.pad_id = 999; }), "tokenizer.ggml.padding_token_id");
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) {
                       v.scores.assign(v.tokens.size(), 0.0f);
                       v.scores[5] = std::nanf("");
                     }),
                     "tokenizer.ggml.scores[5]: is NaN");
}

TEST(GgufTokenizerErrors, TokensAndMerges) {
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.tokens[258] = "Ġt"; }),
                     "tokenizer.ggml.tokens[258]: \"Ġt\" is also token 256");
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.merges[1] = "h x"; }), "tokenizer.ggml.merges[1]");
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.merges[1] = "h x"; }), "\"h x\"");
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.merges[2] = "Ġth"; }),
                     "tokenizer.ggml.merges[2]: \"Ġth\" is not two tokens separated by a space");
  // "Ġ" and "e" are tokens but "Ġe" is not.
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.merges.push_back("Ġ e"); }),
                     "tokenizer.ggml.merges[4]: \"Ġe\" is not a token");
}

TEST(GgufTokenizerErrors, SpecialTokenIdsNeeded) {
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) { v.bos_id.reset(); }),
                     "tokenizer.ggml.bos_token_id: missing, but BOS is to be added");
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) {
                       v.eos_id.reset();
                       v.add_eos_token = true;
                     }),
                     "tokenizer.ggml.eos_token_id: missing, but EOS is to be added");
  // llama-bpe adds BOS unless the file says otherwise.
  EXPECT_MESSAGE_HAS(error_with([](GgufVocab& v) {
                       v.pre = "llama-bpe";
                       v.bos_id.reset();
                       v.add_bos_token.reset();
                     }),
                     "tokenizer.ggml.bos_token_id: missing");
}

TEST(GgufTokenizerErrors, ByteTokensOfSentencePiece) {
  GgufVocab vocab;
  vocab.origin = "spm.gguf";
  vocab.model = "llama";
  vocab.tokens = {"<unk>", "<s>", "</s>", "<0x0A>", "<0x0G>"};
  vocab.token_type = {2, 3, 3, 6, 6};
  const std::string message = testing::error_of([&] { Tokenizer::from_gguf_vocab(vocab); });
  EXPECT_MESSAGE_HAS(message,
                     "spm.gguf: tokenizer.ggml.tokens[4]: \"<0x0G>\" has type byte but is not <0xXX>");
  vocab.tokens[4] = "a";
  vocab.token_type[4] = 1;
  EXPECT_EQ(testing::error_of([&] { Tokenizer::from_gguf_vocab(vocab); }), "no error");
}

// Without byte tokens, a character that is not a token becomes the unknown token (llama.cpp would stop).
TEST(GgufTokenizerErrors, SentencePieceUnknownCharacter) {
  GgufVocab vocab;
  vocab.origin = "spm.gguf";
  vocab.model = "llama";
  vocab.tokens = {"<unk>",
                  "<s>",
                  "</s>",
                  "\xE2\x96\x81",
                  "a",
                  "\xE2\x96\x81"
                  "a"};
  vocab.scores = {0, 0, 0, -2, -1, -0.5f};
  vocab.token_type = {2, 3, 3, 1, 1, 1};
  const Tokenizer tokenizer = Tokenizer::from_gguf_vocab(vocab);
  EXPECT_EQ(tokenizer.encode("a a", true), (std::vector<int32_t>{1, 5, 5}));
  EXPECT_EQ(tokenizer.encode("a\xE2\x98\x83", false), (std::vector<int32_t>{5, 0}));
  EXPECT_EQ(tokenizer.decode(std::vector<int32_t>{1, 5, 5}, true), "a a");
}

// read_gguf_vocab: a missing or mistyped key is an error naming the file and the key.
TEST(GgufTokenizerErrors, ReadingKeys) {
  auto read_error = [](const GgufVocab& vocab) {
    const std::vector<std::byte> image = testing::gguf_image_of(vocab);
    return testing::error_of([&] { read_gguf_vocab(GgufFile::parse(image, "tiny.gguf")); });
  };
  GgufVocab no_merges = testing::tiny_gguf_vocab();
  no_merges.merges.clear();
  EXPECT_MESSAGE_HAS(read_error(no_merges), "tiny.gguf: metadata key 'tokenizer.ggml.merges' is missing");

  testing::GgufBuilder b;
  b.kv_string("tokenizer.ggml.model", "gpt2");
  b.kv_array("tokenizer.ggml.tokens", std::vector<uint32_t>{1, 2});
  const std::vector<std::byte> mistyped = b.build();
  const std::string message =
      testing::error_of([&] { read_gguf_vocab(GgufFile::parse(mistyped, "bad.gguf")); });
  EXPECT_MESSAGE_HAS(message, "bad.gguf");
  EXPECT_MESSAGE_HAS(message, "tokenizer.ggml.tokens");

  const std::vector<std::byte> empty = testing::GgufBuilder().build();
  EXPECT_MESSAGE_HAS(testing::error_of([&] { read_gguf_vocab(GgufFile::parse(empty, "e.gguf")); }),
                     "e.gguf: metadata key 'tokenizer.ggml.model' is missing");
  testing::GgufBuilder model_only;
  model_only.kv_string("tokenizer.ggml.model", "llama");
  const std::vector<std::byte> no_tokens = model_only.build();
  EXPECT_MESSAGE_HAS(testing::error_of([&] { read_gguf_vocab(GgufFile::parse(no_tokens, "m.gguf")); }),
                     "m.gguf: metadata key 'tokenizer.ggml.tokens' is missing");
}

}  // namespace
}  // namespace qllm
