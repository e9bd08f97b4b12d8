// A tiny self-contained tokenizer.json (no shared folder needed): BPE merge order, added tokens, the
// post-processor; and every way loading must fail, with a message naming the file and field.
#include <gtest/gtest.h>

#include "qllm/error.h"
#include "qllm/tokenizer.h"
#include "tests/cpu/tokenizer_test_support.h"

namespace qllm {
namespace {

using testing::TempDir;
using testing::tiny_tokenizer_json;

Tokenizer load_tiny(const TempDir& dir, const nlohmann::json& json = tiny_tokenizer_json()) {
  dir.write("tokenizer.json", json.dump());
  return Tokenizer::load(dir.path());
}

// The message of the qllm::Error that loading `contents` as tokenizer.json throws ("" when none).
std::string load_error(const std::string& contents) {
  const TempDir dir;
  dir.write("tokenizer.json", contents);
  try {
    Tokenizer::load(dir.path());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_LOAD_ERROR(contents, expected)                                                 \
  do {                                                                                        \
    const std::string message_ = load_error(contents);                                        \
    EXPECT_NE(message_.find(expected), std::string::npos) << "message: " << message_;         \
    EXPECT_NE(message_.find("tokenizer.json"), std::string::npos) << "message: " << message_; \
  } while (0)

TEST(TokenizerTiny, MergesApplyByRank) {
  const TempDir dir;
  const Tokenizer tokenizer = load_tiny(dir);
  EXPECT_EQ(tokenizer.vocab_size(), 262u);
  EXPECT_EQ(tokenizer.encode(" the", false), (std::vector<int32_t>{258}));
  // "Ġthee" is not in the vocabulary: Ġ+t (rank 0), then h+e (rank 1) before Ġt+h (rank 2), so Ġt+he.
  EXPECT_EQ(tokenizer.encode(" thee", false), (std::vector<int32_t>{258, 'e'}));
  EXPECT_EQ(tokenizer.encode(" th", false), (std::vector<int32_t>{259}));
  EXPECT_EQ(tokenizer.encode("the", false), (std::vector<int32_t>{'t', 257}));
  EXPECT_EQ(tokenizer.encode(" the", true), (std::vector<int32_t>{260, 258}));  // TemplateProcessing: BOS
  EXPECT_EQ(tokenizer.bos_id(), 260);
  EXPECT_EQ(tokenizer.encode("", true), (std::vector<int32_t>{260}));
  EXPECT_EQ(tokenizer.encode("a<|eot_id|><|eot_id|> the", false), (std::vector<int32_t>{'a', 261, 261, 258}));
  EXPECT_EQ(tokenizer.decode(std::vector<int32_t>{260, 258, 261}, true), " the");
  EXPECT_EQ(tokenizer.decode(std::vector<int32_t>{260, 258, 261}, false), "<|begin_of_text|> the<|eot_id|>");
}

TEST(TokenizerTiny, IgnoreMergesTakesWholeVocabularyWords) {
  // "Ġxy" is in the vocabulary but no merge builds it: only ignore_merges produces it.
  nlohmann::json json = tiny_tokenizer_json();
  json["model"]["ignore_merges"] = false;
  json["model"]["vocab"]["Ġxy"] = 262;
  json["model"]["vocab"]["xy"] = 263;
  json["model"]["merges"].push_back("x y");
  const TempDir dir;
  const Tokenizer tokenizer = load_tiny(dir, json);
  EXPECT_EQ(tokenizer.encode(" xy", false), (std::vector<int32_t>{' ', 263}));
  json["model"]["ignore_merges"] = true;
  const TempDir dir2;
  EXPECT_EQ(load_tiny(dir2, json).encode(" xy", false), (std::vector<int32_t>{262}));
}

TEST(TokenizerTiny, AddedTokenStripFlags) {
  nlohmann::json json = tiny_tokenizer_json();
  json["added_tokens"][1]["lstrip"] = true;
  json["added_tokens"][1]["rstrip"] = true;
  const TempDir dir;
  const Tokenizer tokenizer = load_tiny(dir, json);
  // The whitespace on both sides belongs to the token.
  EXPECT_EQ(tokenizer.encode("a  <|eot_id|> \n b", false), (std::vector<int32_t>{'a', 261, 'b'}));
}

TEST(TokenizerTiny, MissingTokenizerJsonOrDirectory) {
  const TempDir dir;
  EXPECT_THROW(Tokenizer::load(dir.path()), Error);
  EXPECT_THROW(Tokenizer::load(dir.path() / "nope"), Error);
  try {
    Tokenizer::load(dir.path());
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tokenizer.json"), std::string::npos) << e.what();
  }
}

TEST(TokenizerErrors, MalformedJson) {
  const std::string full = tiny_tokenizer_json().dump();
  EXPECT_LOAD_ERROR(full.substr(0, full.size() / 2), "not valid JSON");
  EXPECT_LOAD_ERROR("", "not valid JSON");
  EXPECT_LOAD_ERROR("[1, 2]", "must be a JSON object");
}

TEST(TokenizerErrors, MissingOrWrongFields) {
  nlohmann::json json = tiny_tokenizer_json();
  json.erase("model");
  EXPECT_LOAD_ERROR(json.dump(), "field 'model': missing");

  json = tiny_tokenizer_json();
  json["model"].erase("merges");
  EXPECT_LOAD_ERROR(json.dump(), "field 'model.merges': missing");

  json = tiny_tokenizer_json();
  json["model"]["vocab"]["Ġt"] = -5;
  EXPECT_LOAD_ERROR(json.dump(), "must be a token id");

  json = tiny_tokenizer_json();
  json["model"]["vocab"]["duplicate"] = 7;
  EXPECT_LOAD_ERROR(json.dump(), "id 7 is given to both");

  json = tiny_tokenizer_json();
  json["added_tokens"][0]["id"] = 258;  // already "Ġthe"
  EXPECT_LOAD_ERROR(json.dump(), "already belongs to");
}

TEST(TokenizerErrors, MergesReferencingUnknownTokens) {
  nlohmann::json json = tiny_tokenizer_json();
  json["model"]["merges"].push_back("Ġthe zzz");
  EXPECT_LOAD_ERROR(json.dump(), "field 'model.merges[4]': token \"zzz\" is not in model.vocab");

  json = tiny_tokenizer_json();
  json["model"]["merges"].push_back(nlohmann::json::array({"a", "b"}));  // "ab" is not in the vocabulary
  EXPECT_LOAD_ERROR(json.dump(), "token \"ab\" is not in model.vocab");

  json = tiny_tokenizer_json();
  json["model"]["merges"].push_back("abc");
  EXPECT_LOAD_ERROR(json.dump(), "is not two tokens separated by one space");
}

TEST(TokenizerErrors, UnsupportedConfigurations) {
  nlohmann::json json = tiny_tokenizer_json();
  json["model"]["type"] = "WordPiece";
  EXPECT_LOAD_ERROR(json.dump(), "field 'model.type': unsupported value \"WordPiece\"");

  json = tiny_tokenizer_json();
  json["normalizer"] = {{"type", "NFC"}};
  EXPECT_LOAD_ERROR(json.dump(), "field 'normalizer': unsupported value");

  json = tiny_tokenizer_json();
  json["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_LOAD_ERROR(json.dump(), "field 'pre_tokenizer': unsupported value");

  json = tiny_tokenizer_json();
  json["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  EXPECT_LOAD_ERROR(json.dump(), "field 'pre_tokenizer.pretokenizers[0].behavior': unsupported");

  json = tiny_tokenizer_json();
  json["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true;
  EXPECT_LOAD_ERROR(json.dump(), "pretokenizers[1].add_prefix_space': unsupported");

  json = tiny_tokenizer_json();
  json["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  EXPECT_LOAD_ERROR(json.dump(), "cannot compile the regex");

  json = tiny_tokenizer_json();
  json["model"]["byte_fallback"] = true;
  EXPECT_LOAD_ERROR(json.dump(), "field 'model.byte_fallback': unsupported");

  json = tiny_tokenizer_json();
  json["decoder"] = {{"type", "WordPiece"}};
  EXPECT_LOAD_ERROR(json.dump(), "field 'decoder': unsupported");

  json = tiny_tokenizer_json();
  json["post_processor"] = {{"type", "BertProcessing"}};
  EXPECT_LOAD_ERROR(json.dump(), "field 'post_processor.type': unsupported value \"BertProcessing\"");

  json = tiny_tokenizer_json();
  json["truncation"] = {{"max_length", 8}};
  EXPECT_LOAD_ERROR(json.dump(), "field 'truncation': unsupported");

  json = tiny_tokenizer_json();
  json["added_tokens"][0]["single_word"] = true;
  EXPECT_LOAD_ERROR(json.dump(), "field 'added_tokens[0].single_word': unsupported");
}

}  // namespace
}  // namespace qllm
