// Regression tests of crafted and mistaken input found by trying qllm as a new user would: each case once
// crashed, allocated without bound, or was silently accepted. Every one must now end with a message naming
// the problem and the documented exit status (1 runtime error, 2 usage error).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/checked_math.h"
#include "core/file_io.h"
#include "core/json.h"
#include "model/llama_config.h"
#include "model/llama_weights.h"
#include "model/synthetic.h"
#include "qllm/quant.h"
#include "qllm/tokenizer.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;
using testing::run_command;
using testing::TempDir;

const std::string kQllm = std::string(QLLM_BINARY_DIR) + "/bin/qllm";

std::string nested_array(int depth, const std::string& inner = "1") {
  return std::string(static_cast<size_t>(depth), '[') + inner + std::string(static_cast<size_t>(depth), ']');
}

void write_tiny(const TempDir& dir) {
  write_synthetic_checkpoint({.preset = "tiny", .out_dir = dir.str(), .seed = 3});
}

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(std::ifstream(path));
}

void write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream(path) << j.dump();
}

TEST(JsonLimits, DeepNestingIsAnErrorNotAStackOverflow) {
  const std::string deep = nested_array(200000);
  EXPECT_NE(error_of([&] { parse_json(deep, "x.json"); }).find("x.json: JSON nests deeper than 64 levels"),
            std::string::npos);
  EXPECT_NO_THROW(parse_json(nested_array(64), "x.json"));
}

TEST(JsonLimits, DuplicateKeysAreRefusedAtEveryDepth) {
  EXPECT_NE(error_of([] { parse_json(R"({"a": 1, "a": 2})", "x.json"); }).find(R"(key "a" appears twice)"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_json(R"({"a": {"b": 1, "b": 1}})", "x.json"); }).find("appears twice"),
            std::string::npos);
  EXPECT_NO_THROW(parse_json(R"({"a": {"b": 1}, "b": {"b": 1}})", "x.json"));
}

TEST(JsonLimits, ExcerptsAreBounded) {
  const nlohmann::json deep = parse_json(nested_array(60), "x");
  EXPECT_EQ(json_excerpt(deep), "an array of 1 elements");
  EXPECT_EQ(json_excerpt(parse_json("[1, 2, 3]", "x")), "[1,2,3]");
  const std::string excerpt = json_excerpt(std::string(10000, 'a'));
  EXPECT_LT(excerpt.size(), 100u);
  EXPECT_NE(excerpt.find("(10000 bytes)"), std::string::npos);
}

// Each JSON file of a model directory with a deep value of the wrong type: exit 1 with the file named, where
// the error path once dumped the value recursively and crashed (exit 139).
TEST(CrashedBefore, DeepWrongTypeValuesInEveryModelJson) {
  for (const std::string file : {"config.json", "generation_config.json", "tokenizer.json"}) {
    SCOPED_TRACE(file);
    TempDir dir;
    write_tiny(dir);
    nlohmann::json j = read_json(dir.file(file));
    const std::string key = file == "tokenizer.json" ? "normalizer"
                            : file == "config.json"  ? "hidden_size"
                                                     : "temperature";
    j[key] = parse_json(nested_array(60), "deep");
    write_json(dir.file(file), j);
    const auto r = run_command(kQllm + " generate --model " + dir.str() + " --prompt hi --max-tokens 1");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(file), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("an array of 1 elements"), std::string::npos) << r.output;
  }
  TempDir dir;
  write_tiny(dir);
  dir.write("config.json", "{\"a\": " + nested_array(100000) + "}");
  const auto r = run_command(kQllm + " generate --model " + dir.str() + " --prompt hi");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("nests deeper than 64 levels"), std::string::npos) << r.output;
}

TEST(CrashedBefore, ShardIndexWithDeepValues) {
  TempDir dir;
  write_tiny(dir);
  dir.write("model.safetensors.index.json", R"({"weight_map": {"x": )" + nested_array(60) + "}}");
  std::filesystem::rename(dir.file("model.safetensors"), dir.file("model-00001-of-00001.safetensors"));
  const std::string message = error_of([&] { SafetensorsCheckpoint::open(dir.str()); });
  EXPECT_NE(message.find("model.safetensors.index.json"), std::string::npos) << message;
}

TEST(CrashedBefore, SizeProductsOverflowing64Bits) {
  EXPECT_NE(error_of([] { validate_int4_shape(int64_t{1} << 62, 4, {}); }).find("overflows 64 bits"),
            std::string::npos);
  auto r = run_command(kQllm + " quant-error --rows 4611686018427387904 --cols 4");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("overflows 64 bits"), std::string::npos) << r.output;
  // Fits in 64 bits but not in memory: named, not std::bad_alloc.
  r = run_command(kQllm + " quant-error --rows 1099511627776 --cols 1024");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("more than this machine's"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("bad_alloc"), std::string::npos) << r.output;
}

TEST(CrashedBefore, HugeTokenIdsInTokenizerJson) {
  for (const int64_t id : {int64_t{2147483647}, int64_t{2000000000}}) {
    for (const bool added : {false, true}) {
      SCOPED_TRACE(fmt::format("id {} in {}", id, added ? "added_tokens" : "model.vocab"));
      TempDir dir;
      write_tiny(dir);
      nlohmann::json j = read_json(dir.file("tokenizer.json"));
      if (added) {
        j["added_tokens"][0]["id"] = id;
      } else {
        j["model"]["vocab"]["zzz"] = id;
      }
      write_json(dir.file("tokenizer.json"), j);
      const std::string message = error_of([&] { Tokenizer::load(dir.path()); });
      EXPECT_NE(message.find(fmt::format("id {} is not below", id)), std::string::npos) << message;
    }
  }
}

TEST(CrashedBefore, TokenizerLargerThanTheModelVocabulary) {
  TempDir dir;
  write_tiny(dir);
  nlohmann::json config = read_json(dir.file("config.json"));
  config["vocab_size"] = 260;  // the tokenizer defines 272 ids
  config["eos_token_id"] = 257;
  write_json(dir.file("config.json"), config);
  const auto r = run_command(kQllm + " generate --model " + dir.str() + " --prompt hi --max-tokens 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("the tokenizer defines ids up to 271 but the model's vocab_size is 260"),
            std::string::npos)
      << r.output;
}

TEST(CrashedBefore, TextFromADeviceOrTooLarge) {
  EXPECT_NE(error_of([] { read_text_file("/dev/zero"); }).find("/dev/zero: is not a regular file"),
            std::string::npos);
  TempDir dir;
  write_tiny(dir);
  dir.write("big.txt", std::string(2000, 'x'));
  EXPECT_NE(
      error_of([&] { read_text_file(dir.file("big.txt"), 1000); }).find("larger than the 1000 byte limit"),
      std::string::npos);
  const auto r = run_command(kQllm + " perplexity --model " + dir.str() + " --file /dev/zero");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("is not a regular file"), std::string::npos) << r.output;
}

TEST(SilentBefore, TensorsTheConfigDoesNotUse) {
  TempDir dir;
  write_tiny(dir);
  nlohmann::json config = read_json(dir.file("config.json"));
  config["num_hidden_layers"] = 1;  // the checkpoint has 2
  write_json(dir.file("config.json"), config);
  const LlamaConfig c = LlamaConfig::load(dir.str());
  const std::string message = error_of([&] { LlamaWeights::load(dir.str(), c); });
  EXPECT_NE(message.find("tensors are not used by the model"), std::string::npos) << message;
  EXPECT_NE(message.find("model.layers.1."), std::string::npos) << message;
}

TEST(SilentBefore, DuplicateTensorNameInASafetensorsHeader) {
  const std::string header = R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                             R"( "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})";
  std::string file(8, '\0');
  const uint64_t length = header.size();
  std::memcpy(file.data(), &length, 8);
  file += header + std::string(8, '\0');
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(file.data()), file.size());
  const std::string message = error_of([&] { parse_safetensors_header(bytes, "m.safetensors"); });
  EXPECT_NE(message.find(R"(key "a" appears twice)"), std::string::npos) << message;
}

TEST(SilentBefore, HiddenSizeNotDivisibleByTheHeads) {
  nlohmann::json j = LlamaConfig::tiny().to_hf_json();
  j.erase("head_dim");
  j["hidden_size"] = 66;
  const std::string message = error_of([&] { LlamaConfig::from_json(j, "config.json"); });
  EXPECT_NE(message.find("hidden_size 66 is not divisible by num_attention_heads 4"), std::string::npos)
      << message;
}

TEST(CliFriction, UsageErrorsExit2AndSuggestTheClosestFlag) {
  auto r = run_command(kQllm + " generate --model x --prompt hi --max-token 3");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("did you mean '--max-tokens'?"), std::string::npos) << r.output;
  r = run_command(kQllm + " quant-error --seed -1");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_command(kQllm + " generate --model x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--prompt or --prompt-file is required"), std::string::npos) << r.output;
  r = run_command(kQllm + " --help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Exit status"), std::string::npos) << r.output;
}

TEST(CliFriction, GroupSizesThatAreNotPositiveEven) {
  for (const char* g : {"0", "-16", "7"}) {
    const auto r = run_command(kQllm + " quant-error --rows 4 --cols 64 --group-sizes " + g);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(std::string(g) + " is not a positive even number"), std::string::npos)
        << r.output;
  }
}

TEST(CliFriction, MissingModelDirectoryIsNamed) {
  const auto r = run_command(kQllm + " generate --model /nonexistent/model --prompt hi");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("model '/nonexistent/model' not found"), std::string::npos) << r.output;
}

TEST(CliFriction, SynthRefusesANonEmptyDirectoryWithoutForce) {
  TempDir dir;
  dir.write("keep.txt", "mine");
  auto r = run_command(kQllm + " synth --config tiny --out " + dir.str());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("is not an empty directory"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("config.json")));
  r = run_command(kQllm + " synth --config tiny --force --out " + dir.str());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("keep.txt")));
}

TEST(CliFriction, PromptFileAndItsErrors) {
  TempDir dir;
  write_tiny(dir);
  dir.write("prompt.txt", "hello there");
  auto r = run_command(kQllm + " generate --model " + dir.str() + " --prompt-file " + dir.file("prompt.txt") +
                       " --max-tokens 2 --temperature 0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  dir.write("bad.txt",
            "ab\xff"
            "cd");
  r = run_command(kQllm + " generate --model " + dir.str() + " --prompt-file " + dir.file("bad.txt"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--prompt-file " + dir.file("bad.txt")), std::string::npos) << r.output;
}

TEST(CliFriction, ContextCutGenerationSaysContext) {
  TempDir dir;
  write_tiny(dir);
  nlohmann::json config = read_json(dir.file("config.json"));
  config["max_position_embeddings"] = 8;
  write_json(dir.file("config.json"), config);
  nlohmann::json generation = read_json(dir.file("generation_config.json"));
  generation["eos_token_id"] = nlohmann::json::array();  // nothing stops it early
  write_json(dir.file("generation_config.json"), generation);
  config["eos_token_id"] = nlohmann::json::array();
  write_json(dir.file("config.json"), config);
  const auto r = run_command(kQllm + " generate --model " + dir.str() +
                             " --prompt abc --max-tokens 100 "
                             "--temperature 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--max-tokens 100 capped to"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stopped by context"), std::string::npos) << r.output;
}

TEST(CliFriction, ProgressIsPlainLinesWhenCaptured) {
  TempDir dir;
  write_tiny(dir);
  dir.write("text.txt", std::string(3000, 'a'));
  const auto r = run_command(kQllm + " perplexity --model " + dir.str() + " --file " + dir.file("text.txt") +
                             " --ctx 64 --chunks 10");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find('\r'), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("perplexity windows: 10/10 (100%)"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace qllm
