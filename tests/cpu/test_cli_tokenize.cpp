// `qllm tokenize` end to end: the table, the JSON ids (the same as the library's), and clear failures.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "qllm/tokenizer.h"
#include "tests/cpu/tokenizer_test_support.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::run_command;

const std::string kQllm = std::string(QLLM_BINARY_DIR) + "/bin/qllm";

// The last line of the output that starts with '[' (stderr's timing line comes after stdout's ids).
nlohmann::json json_line(const std::string& output) {
  size_t start = 0;
  while (start < output.size()) {
    const size_t end = output.find('\n', start);
    const std::string line = output.substr(start, end - start);
    if (!line.empty() && line[0] == '[') return nlohmann::json::parse(line);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return nullptr;
}

class CliTokenize : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::shared_tokenizer_dir("models/proxy-llama-22m");
    QLLM_SKIP_WITHOUT_SHARED(dir_);
  }
  std::string dir_;
};

TEST_F(CliTokenize, IdsAsJsonMatchTheLibrary) {
  const Tokenizer tokenizer = Tokenizer::load(dir_);
  auto r = run_command(kQllm + " tokenize --model " + dir_ + " --text 'Hello world<|eot_id|>' --ids");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json_line(r.output), nlohmann::json(tokenizer.encode("Hello world<|eot_id|>", true))) << r.output;
  EXPECT_EQ(json_line(r.output)[0], 0) << "BOS from the TemplateProcessing post_processor";
  EXPECT_NE(r.output.find("tokens from 21 bytes"), std::string::npos) << r.output;

  r = run_command(kQllm + " tokenize --model " + dir_ + " --text 'Hello world' --ids --no-special");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json_line(r.output), nlohmann::json(tokenizer.encode("Hello world", false))) << r.output;
}

// A .gguf file as --model: the ids of llama.cpp's llama-tokenize (the SmolLM2 fixture), no BOS added.
TEST(CliTokenizeGguf, IdsOfAGgufFile) {
  const std::string shared = testing::shared_dir();
  QLLM_SKIP_WITHOUT_SHARED(shared);
  const std::string gguf = shared + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  const auto r = run_command(kQllm + " tokenize --model " + gguf + " --text 'Hello, world' --ids");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json_line(r.output), nlohmann::json({19556, 28, 905})) << r.output;
}

TEST_F(CliTokenize, TableShowsEscapedTokens) {
  const testing::TempDir tmp;
  const auto file = tmp.write("input.txt", "a\tb\n\nc \xC3\xA9");
  const auto r =
      run_command(kQllm + " tokenize --model " + dir_ + " --file " + file.string() + " --no-special");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("| index |   id | token\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("|     0 |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("| \"\\t\""), std::string::npos) << r.output;  // a tab token, escaped
  EXPECT_NE(r.output.find("| \"\\n\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("| \"\xC3\xA9\""), std::string::npos) << r.output;  // a whole character as it is
  EXPECT_NE(r.output.find("8 tokens from 9 bytes"), std::string::npos) << r.output;
}

TEST_F(CliTokenize, FileInputAndTokenizerOnlyFolder) {
  const testing::TempDir tmp;
  const auto file = tmp.write("input.txt", "The cat sat on the mat.\n");
  const auto r = run_command(kQllm + " tokenize --model " + dir_ + " --file " + file.string() + " --ids");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json_line(r.output),
            nlohmann::json(Tokenizer::load(dir_).encode("The cat sat on the mat.\n", true)));

  const std::string llama3 = testing::shared_tokenizer_dir("tokenizers/llama3");
  const auto r3 = run_command(kQllm + " tokenize --model " + llama3 + " --text 'Hello world' --ids");
  ASSERT_EQ(r3.exit_code, 0) << r3.output;
  EXPECT_EQ(json_line(r3.output), nlohmann::json({9906, 1917})) << r3.output;
}

TEST_F(CliTokenize, BadInputFailsWithAMessage) {
  auto r = run_command(kQllm + " tokenize --model /no/such/dir --text hi");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("/no/such/dir: not a directory"), std::string::npos) << r.output;

  r = run_command(kQllm + " tokenize --model " + dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("exactly one of --text and --file"), std::string::npos) << r.output;

  const testing::TempDir tmp;
  const auto file = tmp.write("bad.txt", "ok \xFF bad");
  r = run_command(kQllm + " tokenize --model " + dir_ + " --text hi --file " + file.string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("exactly one of --text and --file"), std::string::npos) << r.output;

  r = run_command(kQllm + " tokenize --model " + dir_ + " --file " + file.string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("invalid UTF-8 at byte offset 3"), std::string::npos) << r.output;

  r = run_command(kQllm + " tokenize --model " + dir_ + " --file " + (tmp.path() / "absent.txt").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("absent.txt: no such file"), std::string::npos) << r.output;

  r = run_command(kQllm + " tokenize --model " + tmp.path().string() + " --text hi");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("no tokenizer.json"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace qllm
