// Continuous batching (server/scheduler.h) on the CPU reference with the tiny synthetic model: requests that
// join and leave a running batch, prompts fed in chunks beside others' decode steps, more requests than
// sequence slots, get exactly the tokens generate() gives each alone; cancellation frees the slot and its
// KV positions at once; a full queue refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "server/metrics.h"
#include "server/scheduler.h"
#include "tests/cpu/model_test_support.h"

namespace qllm::server {
namespace {

using namespace std::chrono_literals;

struct Collected {
  std::vector<int32_t> tokens;
  std::vector<TokenLogprob> logprobs;
  FinishReason reason = FinishReason::None;
  std::string error;
};

Collected collect(Job& job) {
  Collected c;
  for (int i = 0; i < 6000; ++i) {  // at most a minute
    Job::Update u = job.wait(10ms);
    c.tokens.insert(c.tokens.end(), u.tokens.begin(), u.tokens.end());
    c.logprobs.insert(c.logprobs.end(), u.logprobs.begin(), u.logprobs.end());
    if (u.finished) {
      c.reason = u.reason;
      c.error = u.error;
      return c;
    }
  }
  ADD_FAILURE() << "job did not finish";
  return c;
}

// The scheduler's figures once it is idle: they are published after the step that finished the last job,
// a moment after that job's waiter wakes.
SchedulerStats idle_stats(const Scheduler& scheduler) {
  for (int i = 0; i < 1000; ++i) {
    const SchedulerStats s = scheduler.stats();
    if (s.running == 0 && s.queued == 0 && s.kv_pages_used == 0) return s;
    std::this_thread::sleep_for(1ms);
  }
  return scheduler.stats();
}

std::vector<int32_t> prompt_of(int64_t length, int32_t salt, int64_t vocab) {
  std::vector<int32_t> p;
  for (int64_t i = 0; i < length; ++i) p.push_back(static_cast<int32_t>((salt * 31 + i * 7 + 3) % vocab));
  return p;
}

class ServerScheduler : public ::testing::Test {
 protected:
  void SetUp() override { model_ = testing::tiny_model(dir_); }

  // generate() alone on a fresh context: the reference for one request.
  std::vector<int32_t> alone(const JobSpec& spec) {
    const auto c = model_->new_context({.max_sequences = 1, .max_positions = kPositions});
    GenerateOptions o;
    o.max_new_tokens = spec.max_tokens;
    o.sampling = spec.sampling;
    o.stop_ids = spec.stop_ids;
    return generate(*c, 0, spec.prompt, o).tokens;
  }

  std::unique_ptr<Context> context(int sequences, int64_t batch_tokens) {
    return model_->new_context(
        {.max_sequences = sequences, .max_positions = kPositions, .max_batch_tokens = batch_tokens});
  }

  static constexpr int64_t kPositions = 48;
  testing::TempDir dir_;
  std::unique_ptr<Model> model_;
};

TEST_F(ServerScheduler, BatchedRequestsGetTheTokensTheyGetAlone) {
  const int64_t vocab = model_->config().vocab_size;
  std::vector<JobSpec> specs;
  for (int i = 0; i < 9; ++i) {
    JobSpec s;
    s.prompt = prompt_of(1 + (i * 5) % 23, i, vocab);  // 1..21 tokens: several chunks of 4
    s.max_tokens = 4 + (i * 3) % 9;
    if (i % 3 == 1) s.sampling = {.temperature = 0.9f, .top_k = 20, .top_p = 0.95f, .seed = 100u + i};
    if (i == 4) s.max_tokens = kPositions;  // cut by the context: prompt + new - 1 positions
    specs.push_back(s);
  }
  ServerMetrics metrics;
  const auto c = context(/*sequences=*/3, /*batch_tokens=*/7);
  Scheduler scheduler(*c, {.max_queue = 16, .prefill_chunk = 4}, &metrics);
  std::vector<std::shared_ptr<Job>> jobs;
  for (const JobSpec& s : specs) {
    jobs.push_back(scheduler.submit(s));
    ASSERT_NE(jobs.back(), nullptr);
    std::this_thread::sleep_for(1ms);  // arrivals spread over the running batch's steps
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const Collected got = collect(*jobs[i]);
    EXPECT_EQ(got.tokens, alone(specs[i])) << "request " << i;
    EXPECT_EQ(got.reason, FinishReason::Length) << "request " << i;
  }
  const SchedulerStats stats = idle_stats(scheduler);
  EXPECT_EQ(stats.running, 0);
  EXPECT_EQ(stats.kv_pages_used, 0);
  EXPECT_LE(stats.last_batch_tokens, 7);
  const std::string text = metrics.prometheus(stats);
  EXPECT_NE(text.find("qllm_generations_total{reason=\"length\"} 9"), std::string::npos) << text;
}

// A request that asks for log-probabilities gets, for each token, the log-softmax of the model's logits at its
// position (the logits of prompt + tokens so far, recomputed here) and the top k; its neighbour in the batch,
// which asked for none, gets none and the same tokens as alone.
TEST_F(ServerScheduler, LogprobsOfEachTokenInABatch) {
  const int64_t vocab = model_->config().vocab_size;
  JobSpec with, without;
  with.prompt = prompt_of(6, 1, vocab);
  with.max_tokens = 5;
  with.sampling = {.temperature = 0.8f, .seed = 9};
  with.logprobs = 3;
  without.prompt = prompt_of(3, 2, vocab);
  without.max_tokens = 5;
  const auto c = context(2, 16);
  Scheduler scheduler(*c, {});
  const auto a = scheduler.submit(with), b = scheduler.submit(without);
  const Collected got = collect(*a), other = collect(*b);
  EXPECT_EQ(got.tokens, alone(with));
  EXPECT_EQ(other.tokens, alone(without));
  EXPECT_TRUE(other.logprobs.empty());
  ASSERT_EQ(got.logprobs.size(), got.tokens.size());
  std::vector<int32_t> context_ids = with.prompt;
  context_ids.insert(context_ids.end(), got.tokens.begin(), got.tokens.end() - 1);
  const std::vector<float> logits = testing::all_logits(*model_, context_ids);
  for (size_t i = 0; i < got.tokens.size(); ++i) {
    const float* row = logits.data() + (with.prompt.size() - 1 + i) * static_cast<size_t>(vocab);
    const float max = *std::max_element(row, row + vocab);
    double sum = 0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - max);
    const double log_norm = std::log(sum) + max;
    EXPECT_NEAR(got.logprobs[i].logprob, row[got.tokens[i]] - log_norm, 1e-4) << i;
    ASSERT_EQ(got.logprobs[i].top.size(), 3u);
    EXPECT_EQ(got.logprobs[i].top[0].first, std::max_element(row, row + vocab) - row) << i;
    EXPECT_GE(got.logprobs[i].top[0].second, got.logprobs[i].top[1].second);
    EXPECT_GE(got.logprobs[i].top[0].second, got.logprobs[i].logprob);
  }
}

TEST_F(ServerScheduler, StopIdsEndARequest) {
  JobSpec s;
  s.prompt = prompt_of(5, 1, model_->config().vocab_size);
  s.max_tokens = 10;
  const std::vector<int32_t> free_run = alone(s);
  ASSERT_GE(free_run.size(), 3u);
  s.stop_ids = {free_run[2]};
  const auto c = context(2, 8);
  Scheduler scheduler(*c, {});
  const Collected got = collect(*scheduler.submit(s));
  EXPECT_EQ(got.reason, FinishReason::Stop);
  EXPECT_EQ(got.tokens, alone(s));
  EXPECT_EQ(got.tokens.back(), free_run[2]);
}

TEST_F(ServerScheduler, CancelFreesTheSlotAndAFullQueueRefuses) {
  const int64_t vocab = model_->config().vocab_size;
  // The first request must still run while the others arrive: a context as long as the tiny model allows
  // (about a thousand decode steps, far longer than the few calls between its first token and the cancel).
  const int64_t positions = model_->config().max_position_embeddings;
  const auto c = model_->new_context({.max_sequences = 1, .max_positions = positions, .max_batch_tokens = 8});
  Scheduler scheduler(*c, {.max_queue = 1, .prefill_chunk = 8});
  JobSpec long_one{.prompt = prompt_of(6, 2, vocab), .max_tokens = positions};
  JobSpec next{.prompt = prompt_of(9, 3, vocab), .max_tokens = 5};
  auto first = scheduler.submit(long_one);
  ASSERT_NE(first, nullptr);
  Job::Update u;
  while (u.tokens.empty() && !u.finished) u = first->wait(10ms);  // running: it holds the only slot
  auto queued = scheduler.submit(next);
  ASSERT_NE(queued, nullptr);
  EXPECT_EQ(scheduler.submit(next), nullptr) << "the queue holds one request";
  first->cancel();
  EXPECT_EQ(collect(*first).reason, FinishReason::Cancelled);
  const Collected got = collect(*queued);
  EXPECT_EQ(got.tokens, alone(next));
  EXPECT_EQ(c->length(0), 0) << "a finished request's positions go back at once";
  EXPECT_EQ(idle_stats(scheduler).kv_pages_used, 0);
}

TEST_F(ServerScheduler, RefusesWhatCannotFit) {
  const auto c = context(1, 8);
  Scheduler scheduler(*c, {});
  EXPECT_THROW(scheduler.submit({.prompt = prompt_of(kPositions, 1, 64), .max_tokens = 1}), Error);
  EXPECT_THROW(scheduler.submit({.prompt = {}, .max_tokens = 1}), Error);
  EXPECT_THROW(scheduler.submit({.prompt = {1}, .max_tokens = 0}), Error);
  // A token outside the vocabulary fails its own request in forward(); the scheduler keeps serving.
  const Collected bad =
      collect(*scheduler.submit({.prompt = {static_cast<int32_t>(1 << 30)}, .max_tokens = 2}));
  EXPECT_EQ(bad.reason, FinishReason::Error);
  EXPECT_FALSE(bad.error.empty());
  JobSpec ok{.prompt = {1, 2, 3}, .max_tokens = 3};
  EXPECT_EQ(collect(*scheduler.submit(ok)).tokens, alone(ok));
}

TEST_F(ServerScheduler, StopEndsUnfinishedJobs) {
  const auto c = context(1, 8);
  auto scheduler = std::make_unique<Scheduler>(*c, SchedulerOptions{});
  auto running = scheduler->submit({.prompt = {1, 2}, .max_tokens = kPositions});
  auto waiting = scheduler->submit({.prompt = {3, 4}, .max_tokens = kPositions});
  scheduler.reset();
  EXPECT_TRUE(running->finished());
  EXPECT_TRUE(waiting->finished());
}

}  // namespace
}  // namespace qllm::server
