// generate() and perplexity() on a tiny synthetic model: stopping, streaming, determinism, context
// limits, and the gptq-hf window protocol checked against per-token NLLs.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/generate.h"
#include "engine/perplexity.h"
#include "qllm/error.h"
#include "tests/cpu/model_test_support.h"

namespace qllm {
namespace {

class TinyEngine : public ::testing::Test {
 protected:
  void SetUp() override { model_ = testing::tiny_model(dir_); }
  GenerateResult run(std::span<const int32_t> prompt, const GenerateOptions& options,
                     const TokenCallback& on_token = {}) const {
    const auto c = model_->new_context({.max_sequences = 1});
    return generate(*c, 0, prompt, options, on_token);
  }
  PerplexityResult score(std::span<const int32_t> tokens, const PerplexityOptions& options,
                         int64_t batch_tokens = 512) const {
    const auto c = model_->new_context({.max_sequences = 1, .max_batch_tokens = batch_tokens});
    return perplexity(*c, tokens, options);
  }
  testing::TempDir dir_;
  std::unique_ptr<Model> model_;
};

TEST_F(TinyEngine, GreedyRunsToMaxTokensAndStreamsEachToken) {
  const std::vector<int32_t> prompt = {256, 72, 101, 108, 108, 111};
  std::vector<int32_t> streamed;
  GenerateOptions options;
  options.max_new_tokens = 12;
  const GenerateResult r = run(prompt, options, [&](int32_t t) { streamed.push_back(t); });
  EXPECT_EQ(r.tokens.size(), 12u);
  EXPECT_EQ(streamed, r.tokens);
  EXPECT_EQ(r.stop_reason, "max_tokens");
  EXPECT_EQ(r.prompt_tokens, 6);
  EXPECT_EQ(r.decode_steps, 11);
  EXPECT_GT(r.prefill_tokens_per_second(), 0);
  EXPECT_GT(r.decode_tokens_per_second(), 0);

  // Greedy tokens are the argmax of a full forward over prompt + generated (no cache involved).
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), r.tokens.begin(), r.tokens.end() - 1);
  const std::vector<float> logits = testing::all_logits(*model_, all);
  const int64_t vocab = model_->config().vocab_size;
  for (size_t i = 0; i < r.tokens.size(); ++i) {
    const size_t row = prompt.size() - 1 + i;
    EXPECT_EQ(argmax(std::span(logits).subspan(row * vocab, vocab)), r.tokens[i]) << i;
  }
}

TEST_F(TinyEngine, StopsAtAStopId) {
  const std::vector<int32_t> prompt = {256, 65, 66};
  GenerateOptions options;
  options.max_new_tokens = 12;
  const GenerateResult free_run = run(prompt, options);
  options.stop_ids = {free_run.tokens[3]};
  const GenerateResult r = run(prompt, options);
  const auto first = std::find(free_run.tokens.begin(), free_run.tokens.end(), free_run.tokens[3]);
  EXPECT_EQ(r.tokens, std::vector<int32_t>(free_run.tokens.begin(), first + 1));  // the stop id is kept
  EXPECT_EQ(r.stop_reason, "eos");
}

TEST_F(TinyEngine, SeededSamplingIsReproducible) {
  const std::vector<int32_t> prompt = {256, 1, 2, 3};
  GenerateOptions options;
  options.max_new_tokens = 16;
  options.sampling = {.temperature = 1.0f, .top_k = 100, .top_p = 0.95f, .seed = 99};
  const auto a = run(prompt, options).tokens;
  const auto b = run(prompt, options).tokens;
  EXPECT_EQ(a, b);
  options.sampling.seed = 100;
  EXPECT_NE(run(prompt, options).tokens, a);
}

TEST_F(TinyEngine, PromptLongerThanTheContextIsAnError) {
  const int64_t context = model_->config().max_position_embeddings;
  const std::vector<int32_t> too_long(static_cast<size_t>(context), 65);
  try {
    run(too_long, GenerateOptions{});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit in the context of 1024"), std::string::npos)
        << e.what();
  }
  // One position left: two new tokens (the second is sampled after the first fills the last position, and
  // is never fed), whatever max_new_tokens says; the stop reason names the context.
  const std::vector<int32_t> almost(static_cast<size_t>(context - 1), 65);
  GenerateOptions options;
  options.max_new_tokens = 50;
  const GenerateResult r = run(almost, options);
  EXPECT_EQ(r.tokens.size(), 2u);
  EXPECT_EQ(r.stop_reason, "context");
  EXPECT_THROW(run(std::vector<int32_t>{}, options), Error);
}

// The last token of a window is scored but never fed to the model: its id is checked all the same.
TEST_F(TinyEngine, PerplexityRejectsTokensOutsideTheVocabulary) {
  std::vector<int32_t> tokens(32, 5);
  tokens.back() = static_cast<int32_t>(model_->config().vocab_size);
  PerplexityOptions options;
  options.ctx = 32;
  try {
    score(tokens, options);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target id 272 outside the vocabulary"), std::string::npos)
        << e.what();
  }
}

TEST_F(TinyEngine, PerplexityUsesNonOverlappingWindows) {
  Rng rng(testing::fresh_seed());
  std::vector<int32_t> tokens(70);
  for (auto& t : tokens) t = static_cast<int32_t>(rng.below(256));
  PerplexityOptions options;
  options.ctx = 32;
  int progress_calls = 0;
  options.progress = [&](int64_t, int64_t, double) { ++progress_calls; };
  const PerplexityResult r = score(tokens, options, /*batch_tokens=*/10);
  EXPECT_EQ(r.protocol, "hf");
  EXPECT_EQ(r.windows, 2);  // floor(70 / 32); the last 6 tokens are dropped
  EXPECT_EQ(r.tokens_used, 64);
  EXPECT_EQ(r.scored_tokens, 62);
  EXPECT_EQ(progress_calls, 2);

  // Each window is a fresh sequence: its first token is context only.
  double sum = 0;
  const int64_t vocab = model_->config().vocab_size;
  for (int w = 0; w < 2; ++w) {
    const auto window = std::span(tokens).subspan(w * 32, 32);
    const std::vector<float> logits = testing::all_logits(*model_, window.first(31));
    for (int64_t i = 0; i < 31; ++i) {
      const float* row = logits.data() + i * vocab;
      const float max = *std::max_element(row, row + vocab);
      double z = 0;
      for (int64_t v = 0; v < vocab; ++v) z += std::exp(static_cast<double>(row[v]) - max);
      sum += std::log(z) + max - row[window[i + 1]];
    }
  }
  EXPECT_NEAR(r.mean_nll, sum / 62, 1e-9);
  EXPECT_NEAR(r.perplexity, std::exp(sum / 62), 1e-6 * r.perplexity);
  // A random model predicts near-uniformly: perplexity close to the vocabulary size.
  EXPECT_GT(r.perplexity, 100);

  options.max_windows = 1;
  EXPECT_EQ(score(tokens, options).windows, 1);
  options.ctx = 100;
  EXPECT_THROW(score(tokens, options), Error);  // no full window
  options.ctx = 2048;
  EXPECT_THROW(score(tokens, options), Error);  // beyond the context's positions

  // llama.cpp's protocol: only the second half of each chunk is scored, BOS put first.
  PerplexityOptions llama;
  llama.protocol = PerplexityProtocol::LlamaCpp;
  llama.ctx = 32;
  llama.bos = 256;
  llama.keep_token_nll = true;
  const PerplexityResult half = score(tokens, llama);
  EXPECT_EQ(half.protocol, "llama.cpp");
  EXPECT_EQ(half.scored_tokens, 2 * (32 - 1 - 16));
  std::vector<int32_t> first = std::vector<int32_t>(tokens.begin(), tokens.begin() + 32);
  first[0] = 256;
  const std::vector<float> logits = testing::all_logits(*model_, std::span(first).first(31));
  const float* row = logits.data() + 16 * vocab;
  const float max = *std::max_element(row, row + vocab);
  double z = 0;
  for (int64_t v = 0; v < vocab; ++v) z += std::exp(static_cast<double>(row[v]) - max);
  EXPECT_NEAR(half.token_nll[0], std::log(z) + max - row[first[17]], 1e-9);
}

}  // namespace
}  // namespace qllm
