// Continuous batching over one Context: a single scheduler thread owns the context (its KV pages, its
// sequences) and runs one forward pass per step over every running request. A request joins at any step
// (when a sequence slot is free), its prompt is fed in chunks that share each step with the others' decode
// tokens (a long prompt never stalls them), and it leaves the step it finishes, is cancelled or its client
// goes away: its sequence is truncated to 0 at once, which hands its KV pages back to the pool. Requests
// beyond the free slots wait in a bounded queue; submit() refuses more (the server answers 503).
//
// Threads: HTTP handler threads call submit() and talk to their Job; the scheduler thread is the only one
// that touches the Context. Each Job is a small synchronized channel (mutex + condition variable) of tokens
// from the scheduler to its handler; cancellation is an atomic flag the scheduler reads every step.
//
// Sampling runs inside forward() (ForwardOutputs::sampling): on the GPU engine no logits reach the host.
// Each request draws with its own SamplingParams at step = tokens generated so far, exactly as generate()
// does, so a request's tokens do not depend on what else is in the batch (up to the engine's numerics).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "model/causal_lm.h"
#include "model/sampler.h"

namespace qllm::server {

class ServerMetrics;

struct JobSpec {
  std::vector<int32_t> prompt;  // token ids, fewer than the context's positions
  int64_t max_tokens = 1;       // new tokens at most (cut to what the context leaves)
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;  // generation ends after any of these (empty: ignore EOS)
  // OpenAI's logprobs: -1 none; k = 0..kMaxTopLogprobs: each token's log-probability and the k likeliest.
  int logprobs = -1;
};

// A delivered token's log-probability and the likeliest alternatives (ids and log-probabilities).
struct TokenLogprob {
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};

enum class FinishReason { None, Stop, Length, Cancelled, Error };
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "cancelled", "error"

using Clock = std::chrono::steady_clock;

class Job {
 public:
  explicit Job(JobSpec spec);
  const JobSpec& spec() const { return spec_; }

  struct Update {
    std::vector<int32_t> tokens;  // new since the last wait()
    std::vector<TokenLogprob> logprobs;  // one per token when the spec asked for them, else empty
    bool finished = false;
    FinishReason reason = FinishReason::None;
    std::string error;  // with FinishReason::Error
  };
  // Handler side: waits up to `timeout` for new tokens or the end and takes them.
  Update wait(std::chrono::milliseconds timeout);
  // Handler side: stop generating (a stop string, the client went away); the scheduler frees the sequence at
  // its next step and finishes the job as Cancelled.
  void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

  // Scheduler side.
  void deliver(int32_t token, TokenLogprob logprob = {});
  void finish(FinishReason reason, std::string error = {});
  bool finished() const;

  const Clock::time_point submitted = Clock::now();

 private:
  JobSpec spec_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<int32_t> tokens_;  // delivered, not yet taken
  std::vector<TokenLogprob> logprobs_;
  bool finished_ = false;
  FinishReason reason_ = FinishReason::None;
  std::string error_;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  int64_t max_queue = 256;      // requests waiting for a slot at most
  int64_t prefill_chunk = 512;  // prompt tokens per step at most, all prompts together
};

struct SchedulerStats {
  int64_t queued = 0;          // waiting for a sequence slot
  int64_t running = 0;         // holding a slot
  int64_t kv_pages_used = 0;   // pages of kDefaultKvPageSize positions the running sequences hold
  int64_t kv_pages_total = 0;  // the context's pool
  int64_t steps = 0;           // forward passes so far
  int64_t last_batch_sequences = 0;
  int64_t last_batch_tokens = 0;
};

class Scheduler {
 public:
  // The context's max_sequences are the slots; its max_batch_tokens bound each step (decode tokens first,
  // then prompt chunks). `metrics` (optional) receives per-step and per-request figures.
  Scheduler(Context& context, SchedulerOptions options, ServerMetrics* metrics = nullptr);
  ~Scheduler();  // stop()
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request; nullptr when the queue is full. The prompt must fit the context (checked: a
  // qllm::Error otherwise, before queueing).
  std::shared_ptr<Job> submit(JobSpec spec);
  SchedulerStats stats() const;
  int64_t max_positions() const { return context_.max_positions(); }  // immutable: any thread
  // Ends the thread; jobs not finished end with FinishReason::Error ("server shutting down").
  void stop();

 private:
  struct Running {
    std::shared_ptr<Job> job;
    int seq = 0;
    int64_t fed = 0;               // prompt tokens in the cache
    int64_t generated = 0;         // tokens delivered
    int64_t max_new = 0;           // max_tokens cut to the context
    int32_t last = -1;             // the last token delivered (the next decode input)
    std::vector<int32_t> history;  // prompt + generated, kept only for a repetition penalty
  };

  void run();
  void admit(std::unique_lock<std::mutex>& lock);
  void retire_cancelled();
  void step();
  void release(Running& r, FinishReason reason, const std::string& error = {});
  void publish_stats(int64_t sequences, int64_t tokens);

  Context& context_;
  SchedulerOptions options_;
  ServerMetrics* metrics_;

  mutable std::mutex mutex_;  // guards queue_, stopping_, stats_
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  SchedulerStats stats_;

  // The scheduler thread's own state.
  std::vector<Running> running_;
  std::vector<int> free_seqs_;
  std::thread thread_;
};

}  // namespace qllm::server
