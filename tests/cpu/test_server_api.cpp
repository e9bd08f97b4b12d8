// qllm serve's request parsing (OpenAI fields, every error's status and param) and its text stream (stop
// strings across token boundaries), on the tiny synthetic model's byte-level tokenizer.
#include <gtest/gtest.h>

#include "server/openai_api.h"
#include "server/text_stream.h"
#include "tests/cpu/model_test_support.h"

namespace qllm::server {
namespace {

using nlohmann::json;

CompletionRequest chat(const json& body) {
  return parse_completion_request(body, Endpoint::ChatCompletions, SamplingParams{});
}
CompletionRequest completion(const json& body) {
  return parse_completion_request(body, Endpoint::Completions, SamplingParams{});
}

// The ApiError a body raises (status and param), or a failure when it parses.
void expect_error(const json& body, Endpoint endpoint, int status, const std::string& param) {
  try {
    parse_completion_request(body, endpoint, SamplingParams{});
    ADD_FAILURE() << "no error for " << body.dump();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), status) << body.dump() << ": " << e.what();
    EXPECT_EQ(e.param(), param) << body.dump() << ": " << e.what();
    const json j = error_json(e);
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  }
}

TEST(ServerApi, ParsesChatWithSamplingFields) {
  const CompletionRequest r = chat({{"model", "m"},
                                    {"messages",
                                     {{{"role", "system"}, {"content", "be brief"}},
                                      {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "hi"}}}}}}},
                                    {"max_tokens", 7},
                                    {"temperature", 0.5},
                                    {"top_p", 0.9},
                                    {"top_k", 40},
                                    {"min_p", 0.05},
                                    {"seed", 11},
                                    {"stop", "\n\n"},
                                    {"stream", true},
                                    {"stream_options", {{"include_usage", true}}},
                                    {"n", 1},
                                    {"logprobs", false},
                                    {"user", "ignored"}});
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[1].role, "user");
  EXPECT_EQ(r.messages[1].content, "hi");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.05f);
  EXPECT_EQ(r.sampling.seed, 11u);
  EXPECT_EQ(r.stop, std::vector<std::string>{"\n\n"});
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(ServerApi, DefaultsComeFromTheModel) {
  SamplingParams defaults;
  defaults.temperature = 0.7f;
  defaults.top_k = 50;
  const CompletionRequest r =
      parse_completion_request({{"prompt", "abc"}, {"top_p", nullptr}}, Endpoint::Completions, defaults);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.7f);
  EXPECT_EQ(r.sampling.top_k, 50);
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_EQ(r.prompt, "abc");
  EXPECT_FALSE(r.stream);
}

TEST(ServerApi, PromptAsTokenIdsOrOneString) {
  EXPECT_EQ(completion({{"prompt", {5, 6, 7}}}).prompt_tokens, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(completion({{"prompt", {"one"}}}).prompt, "one");
  EXPECT_EQ(
      chat({{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"max_completion_tokens", 3}}).max_tokens,
      3);
}

TEST(ServerApi, RefusesWrongTypesAndValues) {
  const json msgs = {{{"role", "user"}, {"content", "x"}}};
  const auto C = Endpoint::ChatCompletions;
  const auto P = Endpoint::Completions;
  expect_error(json::array(), C, 400, "");
  expect_error({{"model", "m"}}, C, 400, "messages");
  expect_error({{"messages", "hi"}}, C, 400, "messages");
  expect_error({{"messages", json::array()}}, C, 400, "messages");
  expect_error({{"messages", {{{"role", "robot"}, {"content", "x"}}}}}, C, 400, "messages");
  expect_error({{"messages", {{{"content", "x"}}}}}, C, 400, "messages");
  expect_error({{"messages", msgs}, {"model", 3}}, C, 400, "model");
  expect_error({{"messages", msgs}, {"max_tokens", 0}}, C, 400, "max_tokens");
  expect_error({{"messages", msgs}, {"max_tokens", -5}}, C, 400, "max_tokens");
  expect_error({{"messages", msgs}, {"max_tokens", "10"}}, C, 400, "max_tokens");
  expect_error({{"messages", msgs}, {"max_tokens", 1.5}}, C, 400, "max_tokens");
  expect_error({{"messages", msgs}, {"temperature", 2.5}}, C, 400, "temperature");
  expect_error({{"messages", msgs}, {"temperature", "hot"}}, C, 400, "temperature");
  expect_error({{"messages", msgs}, {"top_p", 0}}, C, 400, "top_p");
  expect_error({{"messages", msgs}, {"top_k", -1}}, C, 400, "top_k");
  expect_error({{"messages", msgs}, {"min_p", 1.5}}, C, 400, "min_p");
  expect_error({{"messages", msgs}, {"seed", "x"}}, C, 400, "seed");
  expect_error({{"messages", msgs}, {"stop", {"a", "b", "c", "d", "e"}}}, C, 400, "stop");
  expect_error({{"messages", msgs}, {"stop", ""}}, C, 400, "stop");
  expect_error({{"messages", msgs}, {"stop", 5}}, C, 400, "stop");
  expect_error({{"messages", msgs}, {"stream", "yes"}}, C, 400, "stream");
  expect_error({{"messages", msgs}, {"n", 2}}, C, 400, "n");
  expect_error({{"messages", msgs}, {"logprobs", 1}}, C, 400, "logprobs");
  expect_error({{"messages", msgs}, {"logprobs", true}, {"top_logprobs", 21}}, C, 400, "top_logprobs");
  expect_error({{"messages", msgs}, {"logprobs", true}, {"top_logprobs", -1}}, C, 400, "top_logprobs");
  expect_error({{"messages", msgs}, {"top_logprobs", 2}}, C, 400, "top_logprobs");  // without logprobs
  expect_error({{"messages", msgs}, {"tools", {{{"type", "function"}}}}}, C, 400, "tools");
  expect_error({{"prompt", ""}}, P, 400, "prompt");
  expect_error({{"prompt", {"a", "b"}}}, P, 400, "prompt");
  expect_error({{"prompt", {1, -2}}}, P, 400, "prompt");
  expect_error({{"prompt", 5}}, P, 400, "prompt");
  expect_error({{"prompt", "x"}, {"logprobs", 21}}, P, 400, "logprobs");
  expect_error({{"prompt", "x"}, {"logprobs", true}}, P, 400, "logprobs");
  expect_error({{"prompt", "x"}, {"echo", true}}, P, 400, "echo");
}

TEST(ServerApi, ResponsesCarryUsage) {
  const ResponseMeta chat_meta{"chatcmpl-1", 5, "m", Endpoint::ChatCompletions};
  const json full = completion_json(chat_meta, "hello", "stop", {3, 2});
  EXPECT_EQ(full["object"], "chat.completion");
  EXPECT_EQ(full["choices"][0]["message"]["content"], "hello");
  EXPECT_EQ(full["usage"]["total_tokens"], 5);
  const json first = chunk_json(chat_meta, "he", true, std::nullopt, std::nullopt);
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const json last = chunk_json(chat_meta, "", false, "length", Usage{3, 2});
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(last["usage"]["completion_tokens"], 2);
  const ResponseMeta text_meta{"cmpl-1", 5, "m", Endpoint::Completions};
  EXPECT_EQ(completion_json(text_meta, "x", "length", {1, 1})["choices"][0]["text"], "x");
  EXPECT_EQ(usage_chunk_json(text_meta, {1, 1})["choices"].size(), 0u);
  EXPECT_NO_THROW(dump(json(std::string("\xff\xfe bad utf-8"))));
}

TEST(ServerApi, LogprobsFields) {
  const json msgs = {{{"role", "user"}, {"content", "x"}}};
  EXPECT_EQ(chat({{"messages", msgs}}).logprobs, -1);
  EXPECT_EQ(chat({{"messages", msgs}, {"logprobs", false}}).logprobs, -1);
  EXPECT_EQ(chat({{"messages", msgs}, {"logprobs", true}}).logprobs, 0);
  EXPECT_EQ(chat({{"messages", msgs}, {"logprobs", true}, {"top_logprobs", 20}}).logprobs, 20);
  EXPECT_EQ(completion({{"prompt", "x"}}).logprobs, -1);
  EXPECT_EQ(completion({{"prompt", "x"}, {"logprobs", nullptr}}).logprobs, -1);
  EXPECT_EQ(completion({{"prompt", "x"}, {"logprobs", 0}}).logprobs, 0);
  EXPECT_EQ(completion({{"prompt", "x"}, {"logprobs", 5}}).logprobs, 5);
}

TEST(ServerApi, LogprobsJsonInEachEndpointsShape) {
  testing::TempDir dir;
  write_synthetic_checkpoint({.preset = "tiny", .out_dir = dir.str(), .seed = 1});
  const Tokenizer tokenizer = Tokenizer::load(dir.str());
  const std::vector<int32_t> tokens = tokenizer.encode("ab", false);
  ASSERT_EQ(tokens.size(), 2u);
  const std::vector<TokenLogprob> lps = {{-0.5f, {{tokens[0], -0.5f}, {tokens[1], -1.5f}}},
                                         {-0.25f, {{tokens[1], -0.25f}, {tokens[0], -2.0f}}}};
  int64_t offset = 0;
  const json chat_lp = logprobs_json(Endpoint::ChatCompletions, tokenizer, tokens, lps, 1, offset);
  ASSERT_EQ(chat_lp["content"].size(), 2u);
  EXPECT_EQ(chat_lp["content"][0]["token"], "a");
  EXPECT_EQ(chat_lp["content"][0]["logprob"], -0.5f);
  EXPECT_EQ(chat_lp["content"][0]["bytes"], json::array({97}));
  ASSERT_EQ(chat_lp["content"][1]["top_logprobs"].size(), 1u);  // top = 1 of the two given
  EXPECT_EQ(chat_lp["content"][1]["top_logprobs"][0]["token"], "b");
  EXPECT_EQ(offset, 2);
  const json text_lp = logprobs_json(Endpoint::Completions, tokenizer, tokens, lps, 2, offset);
  EXPECT_EQ(text_lp["tokens"], json::array({"a", "b"}));
  EXPECT_EQ(text_lp["token_logprobs"], json::array({-0.5f, -0.25f}));
  EXPECT_EQ(text_lp["top_logprobs"][0], (json{{"a", -0.5f}, {"b", -1.5f}}));
  EXPECT_EQ(text_lp["text_offset"], json::array({2, 3}));  // continuing the offset given
  const ResponseMeta meta{"cmpl-1", 5, "m", Endpoint::Completions};
  EXPECT_EQ(completion_json(meta, "ab", "stop", {1, 2}, text_lp)["choices"][0]["logprobs"], text_lp);
  EXPECT_TRUE(completion_json(meta, "ab", "stop", {1, 2})["choices"][0]["logprobs"].is_null());
}

class ServerTextStream : public ::testing::Test {
 protected:
  void SetUp() override {
    write_synthetic_checkpoint({.preset = "tiny", .out_dir = dir_.str(), .seed = 1});
    tokenizer_ = Tokenizer::load(dir_.str());
  }
  // Pushes `text` one token per byte-level token and returns what the stream shows.
  std::string run(const std::string& text, std::vector<std::string> stop, bool* stopped = nullptr) {
    TextStream s(*tokenizer_, std::move(stop));
    std::string out;
    for (int32_t id : tokenizer_->encode(text, false)) out += s.push(id);
    out += s.finish();
    if (stopped != nullptr) *stopped = s.stopped();
    return out;
  }
  testing::TempDir dir_;
  std::optional<Tokenizer> tokenizer_;
};

TEST_F(ServerTextStream, NoStopStringsIsTheDecodedText) {
  EXPECT_EQ(run("hello, w\xc3\xb6rld", {}), "hello, w\xc3\xb6rld");
}

TEST_F(ServerTextStream, CutsBeforeTheEarliestStopString) {
  bool stopped = false;
  EXPECT_EQ(run("one two three END four", {"END", "three"}, &stopped), "one two ");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(run("abcab", {"abd"}, &stopped), "abcab");  // a held prefix is released at the end
  EXPECT_FALSE(stopped);
}

TEST_F(ServerTextStream, HoldsBackWhatMayStartAStopString) {
  TextStream s(*tokenizer_, {"</s>"});
  std::string shown;
  for (int32_t id : tokenizer_->encode("ab</", false)) shown += s.push(id);
  EXPECT_EQ(shown, "ab");
  for (int32_t id : tokenizer_->encode("s>c", false)) shown += s.push(id);
  EXPECT_EQ(shown, "ab");
  EXPECT_TRUE(s.stopped());
}

}  // namespace
}  // namespace qllm::server
