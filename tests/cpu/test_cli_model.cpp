// qllm synth / generate / perplexity end to end: output, JSON, streaming stats, and non-zero exits with a
// message naming the problem for bad models, files, devices and prompts.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/cpu/model_test_support.h"

namespace qllm {
namespace {

using testing::run_command;
using testing::TempDir;

const std::string kQllm = std::string(QLLM_BINARY_DIR) + "/bin/qllm";

std::string quoted(const std::string& s) {
  return "'" + s + "'";
}

// stdout only (stderr discarded), for commands that print JSON.
testing::CommandResult run_json(const std::string& command) {
  return run_command("(" + command + " 2>/dev/null)");
}

void expect_failure(const std::string& command, const std::string& fragment) {
  const auto r = run_command(command);
  EXPECT_NE(r.exit_code, 0) << command << "\n" << r.output;
  EXPECT_NE(r.output.find(fragment), std::string::npos) << command << "\n" << r.output;
}

class CliTiny : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto r = run_command(kQllm + " synth --config tiny --seed 5 --out " + quoted(dir_.str()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_NE(r.output.find("2 layers, hidden 64"), std::string::npos) << r.output;
  }
  TempDir dir_;
};

TEST_F(CliTiny, GenerateGreedyJson) {
  const auto r = run_json(kQllm + " generate --model " + quoted(dir_.str()) +
                          " --prompt Hello --max-tokens 8 --temperature 0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["prompt_ids"], (std::vector<int>{256, 'H', 'e', 'l', 'l', 'o'}));  // BOS + byte tokens
  EXPECT_EQ(j["sampling"], "greedy");
  EXPECT_LE(j["tokens"].size(), 8u);
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0.0);
  // Greedy is deterministic.
  const auto again = run_json(kQllm + " generate --model " + quoted(dir_.str()) +
                              " --prompt Hello --max-tokens 8 --temperature 0 --json");
  EXPECT_EQ(nlohmann::json::parse(again.output)["tokens"], j["tokens"]);
}

TEST_F(CliTiny, GenerateChatRendersTheTemplate) {
  const auto r = run_json(kQllm + " generate --model " + quoted(dir_.str()) +
                          " --prompt Hi --chat --system Be --max-tokens 2 --seed 3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  // <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe<|eot_id|><|start_header_id|>user...
  const std::vector<int> expected_start = {256, 262,  's',  'y', 's', 't', 'e', 'm',
                                           263, '\n', '\n', 'B', 'e', 265, 262};
  const auto ids = j["prompt_ids"].get<std::vector<int>>();
  ASSERT_GE(ids.size(), expected_start.size());
  EXPECT_EQ(std::vector<int>(ids.begin(), ids.begin() + expected_start.size()), expected_start);
  // Ends with the assistant header and a blank line.
  EXPECT_EQ(std::vector<int>(ids.end() - 3, ids.end()), (std::vector<int>{263, '\n', '\n'}));
  // generation_config.json asks for sampling (temperature 0.6, top-p 0.9), as HF would use it.
  EXPECT_NE(j["sampling"].get<std::string>().find("temperature 0.6"), std::string::npos) << j["sampling"];
}

TEST_F(CliTiny, GenerateStreamsAndReportsSpeed) {
  const auto r =
      run_command(kQllm + " generate --model " + quoted(dir_.str()) + " --prompt abc --max-tokens 5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("| prefill |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("| decode  |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tokens_per_s"), std::string::npos) << r.output;
}

TEST_F(CliTiny, GenerateErrors) {
  const std::string model = " --model " + quoted(dir_.str());
  expect_failure(kQllm + " generate" + model + " --prompt x --device tpu",
                 "unknown device 'tpu' (expected auto, cpu or cuda)");
#if !QLLM_HAVE_CUDA
  expect_failure(kQllm + " generate" + model + " --prompt x --device cuda", "built without CUDA");
#endif
  expect_failure(kQllm + " generate" + model + " --prompt " + std::string(1100, 'a'),
                 "does not fit in the context of 1024");
  expect_failure(kQllm + " generate" + model + " --prompt x --system s", "--system needs --chat");
  expect_failure(kQllm + " generate" + model + " --prompt x --top-p 0", "top-p must be in (0, 1]");
  expect_failure(kQllm + " generate" + model + " --prompt x --max-tokens 0", "--max-tokens must be positive");
  expect_failure(kQllm + " generate --model " + quoted(dir_.file("nowhere")) + " --prompt x", "nowhere");

  // Sampling filters on a greedy run: it still runs, with a note that they change nothing.
  std::ofstream(dir_.file("generation_config.json"), std::ios::trunc) << R"({"do_sample": false})";
  const auto greedy = run_command(kQllm + " generate" + model + " --prompt x --max-tokens 2 --top-k 5");
  EXPECT_EQ(greedy.exit_code, 0) << greedy.output;
  EXPECT_NE(greedy.output.find("do nothing with greedy decoding"), std::string::npos) << greedy.output;

  // generation_config.json: a field of the wrong type or value is an error naming the file and the field.
  std::ofstream(dir_.file("generation_config.json"), std::ios::trunc)
      << R"({"do_sample": true, "temperature": "0.7"})";
  expect_failure(kQllm + " generate" + model + " --prompt x",
                 "generation_config.json: 'temperature' must be a number");
  std::ofstream(dir_.file("generation_config.json"), std::ios::trunc) << R"({"do_sample": true, "top_p": 0})";
  expect_failure(kQllm + " generate" + model + " --prompt x",
                 "generation_config.json: top-p must be in (0, 1]");
  std::filesystem::remove(dir_.file("generation_config.json"));

  // A truncated weights file: the error names the file.
  std::filesystem::resize_file(dir_.file("model.safetensors"), 4096);
  expect_failure(kQllm + " generate" + model + " --prompt x", "model.safetensors");
  std::ofstream(dir_.file("model.safetensors"), std::ios::trunc) << "garbage";
  expect_failure(kQllm + " generate" + model + " --prompt x", "model.safetensors");
}

TEST_F(CliTiny, PerplexityTableAndErrors) {
  std::ofstream(dir_.file("text.txt")) << std::string(300, 'x') << " some text\n";
  const auto r = run_command(kQllm + " perplexity --model " + quoted(dir_.str()) + " --file " +
                             quoted(dir_.file("text.txt")) + " --ctx 64");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("| hf       |  64 |       4 |"), std::string::npos) << r.output;  // 311 tokens / 64
  EXPECT_NE(r.output.find("PPL = "), std::string::npos) << r.output;

  const auto j = run_json(kQllm + " perplexity --model " + quoted(dir_.str()) + " --file " +
                          quoted(dir_.file("text.txt")) + " --ctx 64 --chunks 2 --json");
  ASSERT_EQ(j.exit_code, 0) << j.output;
  const auto row = nlohmann::json::parse(j.output)["table"][0];
  EXPECT_EQ(row["windows"], 2);
  EXPECT_EQ(row["scored_tokens"], 126);
  EXPECT_GT(row["perplexity"].get<double>(), 1.0);

  const std::string model = " --model " + quoted(dir_.str());
  expect_failure(kQllm + " perplexity" + model + " --file " + quoted(dir_.file("none.txt")), "none.txt");
  expect_failure(kQllm + " perplexity" + model + " --file " + quoted(dir_.file("text.txt")) + " --ctx 4096",
                 "--ctx 4096 must be in [4, 1024]");
  expect_failure(kQllm + " perplexity" + model + " --file " + quoted(dir_.file("text.txt")) + " --ctx 1000",
                 "do not fill one window");
}

// qllm quantize end to end: the JSON size table, the output running as stored (--quant auto, the default), and
// errors naming the problem.
TEST_F(CliTiny, QuantizeJsonAndLoadAsStored) {
  TempDir out;
  const auto r = run_json(kQllm + " quantize --model " + quoted(dir_.str()) + " --out " + quoted(out.str()) +
                          " --quant int4-g32 --format gptq --device cpu --force --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["format"], "gptq");
  EXPECT_EQ(j["quant"], "int4-g32, lm_head f16, f16 activations");
  ASSERT_EQ(j["table"].size(), 4u);
  EXPECT_EQ(j["table"][3]["weights"], "total");
  EXPECT_GT(j["table"][0]["compression"].get<double>(), 3.0);
  const std::string greedy = " --prompt Hello --max-tokens 6 --temperature 0 --device cpu --json";
  const auto stored = run_json(kQllm + " generate --model " + quoted(out.str()) + greedy);
  ASSERT_EQ(stored.exit_code, 0) << stored.output;
  EXPECT_EQ(nlohmann::json::parse(stored.output)["quant"], j["quant"]);
  expect_failure(kQllm + " quantize --model " + quoted(dir_.str()) + " --out " + quoted(out.str()) +
                     " --quant int4-g32 --format gguf",
                 "unknown checkpoint format 'gguf'");
  expect_failure(
      kQllm + " quantize --model " + quoted(dir_.str()) + " --out " + quoted(out.str()) + " --quant int4-g32",
      "exists and is not an empty directory");
  expect_failure(kQllm + " generate --model " + quoted(out.str()) + " --quant-lm-head bf16 --prompt x",
                 "--quant-lm-head bf16 needs an explicit --quant");
}

TEST(CliSynth, RejectsBadArguments) {
  TempDir dir;
  expect_failure(kQllm + " synth --config llama-9b --out " + quoted(dir.str()),
                 "--config must be llama-3.2-1b, small or tiny");
  expect_failure(
      kQllm + " synth --config tiny --out " + quoted(dir.str()) + " --tokenizer " + quoted(dir.file("x")),
      "tokenizer.json");
}

TEST(CliSynth, CopiesATokenizerAndSizesTheVocabulary) {
  QLLM_PROXY_OR_SKIP(proxy);
  TempDir dir;
  const auto r = run_command(kQllm + " synth --config tiny --out " + quoted(dir.str()) + " --tokenizer " +
                             quoted(proxy));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto config = testing::read_json_file(dir.file("config.json"));
  EXPECT_EQ(config["vocab_size"], 8192);
  EXPECT_EQ(config["bos_token_id"], 0);
  EXPECT_EQ(config["eos_token_id"], (std::vector<int>{1, 4}));
  EXPECT_TRUE(std::filesystem::exists(dir.file("chat_template.jinja")));
  const auto g =
      run_json(kQllm + " generate --model " + quoted(dir.str()) + " --prompt Hi --max-tokens 3 --json");
  ASSERT_EQ(g.exit_code, 0) << g.output;
  EXPECT_EQ(nlohmann::json::parse(g.output)["prompt_ids"][0], 0);
}

// The proxy model end to end against Hugging Face: greedy tokens and perplexity through the CLI (so the
// tokenizer, the model and the protocol are all in the loop).
TEST(CliProxy, GreedyGenerationMatchesHf) {
  QLLM_HF_FIXTURE_OR_SKIP(fixture, "proxy_greedy.json");
  QLLM_PROXY_OR_SKIP(proxy);
  const auto& prompt = fixture["prompts"][0];
  const auto r =
      run_json(kQllm + " generate --model " + quoted(proxy) + " --prompt " +
               quoted(prompt["text"].get<std::string>()) + " --max-tokens 32 --temperature 0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["prompt_ids"], prompt["ids"]);
  const auto tokens = j["tokens"].get<std::vector<int>>();
  const auto expected = prompt["new_ids"].get<std::vector<int>>();
  ASSERT_LE(tokens.size(), expected.size());
  EXPECT_EQ(tokens, std::vector<int>(expected.begin(), expected.begin() + tokens.size()));
  if (tokens.size() < expected.size()) {
    EXPECT_EQ(j["stop_reason"], "eos");
  }
}

TEST(CliProxy, PerplexityMatchesHf) {
  QLLM_HF_FIXTURE_OR_SKIP(fixture, "proxy_wikitext_nll.json");
  QLLM_PROXY_OR_SKIP(proxy);
  const std::string text = testing::shared_dir() + "/data/wikitext-2-raw-test.txt";
  const auto r = run_json(kQllm + " perplexity --model " + quoted(proxy) + " --file " + quoted(text) +
                          " --ctx 1024 --chunks 1 --device cpu --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["file_tokens"], fixture["wikitext_total_tokens"]);
  const auto row = j["table"][0];
  EXPECT_EQ(row["protocol"], "hf");
  EXPECT_EQ(row["scored_tokens"], 1023);
  const double hf = fixture["perplexity"].get<double>();
  EXPECT_NEAR(row["perplexity"].get<double>() / hf, 1.0, 1e-3) << row.dump();
}

TEST(CliBench, MeasuresEveryModeAndBatchAsJson) {
  const auto r = run_json(
      kQllm + " bench --synthetic small --quant bf16,int4-g32 -p 16 -n 4 --batch 1,2 --reps 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  ASSERT_EQ(j["table"].size(), 8u) << r.output;  // 2 modes x 2 batches x (pp, tg)
  EXPECT_EQ(j["table"][0]["test"], "pp16");
  EXPECT_EQ(j["table"][1]["test"], "tg4");
  EXPECT_EQ(j["table"][3]["batch"], 2);
  EXPECT_EQ(j["table"][4]["quant"], "int4-g32");
  for (const auto& row : j["table"]) EXPECT_GT(row["tokens_per_s"].get<double>(), 0.0) << row;
  EXPECT_LT(j["table"][4]["weights_MiB"].get<double>(), j["table"][0]["weights_MiB"].get<double>());
  EXPECT_TRUE(j.contains("date") && j.contains("device"));
}

TEST(CliBench, RejectsBadArguments) {
  expect_failure(kQllm + " bench --synthetic small --model x", "exactly one of --model and --synthetic");
  expect_failure(kQllm + " bench --synthetic small -p 0", "-p: prompt lengths must be >= 1");
  expect_failure(kQllm + " bench --synthetic small --quant int5", "int5");
}

}  // namespace
}  // namespace qllm
