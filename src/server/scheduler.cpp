#include "server/scheduler.h"

#include <algorithm>
#include <exception>

#include "kernels/sampling/top_logprobs.h"
#include "model/kv_page_allocator.h"
#include "qllm/error.h"
#include "server/metrics.h"

namespace qllm::server {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::Stop:
      return "stop";
    case FinishReason::Length:
      return "length";
    case FinishReason::Cancelled:
      return "cancelled";
    case FinishReason::Error:
      return "error";
    case FinishReason::None:
      break;
  }
  return "none";
}

Job::Job(JobSpec spec) : spec_(std::move(spec)) {}

Job::Update Job::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  ready_.wait_for(lock, timeout, [&] { return finished_ || !tokens_.empty(); });
  Update u;
  u.tokens.swap(tokens_);
  u.logprobs.swap(logprobs_);
  u.finished = finished_;
  u.reason = reason_;
  u.error = error_;
  return u;
}

void Job::deliver(int32_t token, TokenLogprob logprob) {
  {
    std::lock_guard lock(mutex_);
    tokens_.push_back(token);
    if (spec_.logprobs >= 0) logprobs_.push_back(std::move(logprob));
  }
  ready_.notify_all();
}

void Job::finish(FinishReason reason, std::string error) {
  {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    finished_ = true;
    reason_ = reason;
    error_ = std::move(error);
  }
  ready_.notify_all();
}

bool Job::finished() const {
  std::lock_guard lock(mutex_);
  return finished_;
}

Scheduler::Scheduler(Context& context, SchedulerOptions options, ServerMetrics* metrics)
    : context_(context), options_(options), metrics_(metrics) {
  QLLM_CHECK(context.max_batch_tokens() >= context.max_sequences(),
             "scheduler: a step must hold one decode token per sequence ({} tokens < {} sequences)",
             context.max_batch_tokens(), context.max_sequences());
  QLLM_CHECK(options.max_queue >= 0 && options.prefill_chunk > 0, "scheduler: bad queue ({}) or chunk ({})",
             options.max_queue, options.prefill_chunk);
  // Slots handed out lowest first (a stack, reversed).
  for (int s = context.max_sequences() - 1; s >= 0; --s) free_seqs_.push_back(s);
  stats_.kv_pages_total = kv_pages_for(context.max_positions(), context.max_sequences(), kDefaultKvPageSize);
  thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
  stop();
}

std::shared_ptr<Job> Scheduler::submit(JobSpec spec) {
  QLLM_CHECK(!spec.prompt.empty(), "empty prompt");
  QLLM_CHECK(static_cast<int64_t>(spec.prompt.size()) < context_.max_positions(),
             "prompt of {} tokens does not fit in the context of {} positions", spec.prompt.size(),
             context_.max_positions());
  QLLM_CHECK(spec.max_tokens > 0, "max_tokens must be positive, got {}", spec.max_tokens);
  QLLM_CHECK(spec.logprobs >= -1 && spec.logprobs <= kMaxTopLogprobs, "logprobs {} outside -1..{}",
             spec.logprobs, kMaxTopLogprobs);
  spec.sampling.validate();
  auto job = std::make_shared<Job>(std::move(spec));
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || static_cast<int64_t>(queue_.size()) >= options_.max_queue) return nullptr;
    queue_.push_back(job);
    stats_.queued = static_cast<int64_t>(queue_.size());
  }
  wake_.notify_one();
  return job;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

// Moves queued jobs into free slots (FIFO). Called with the lock held.
void Scheduler::admit(std::unique_lock<std::mutex>& /*lock*/) {
  // Requests whose clients left while waiting give their place in the queue back at once.
  std::erase_if(queue_, [](const std::shared_ptr<Job>& job) {
    if (job->cancelled()) job->finish(FinishReason::Cancelled);
    return job->cancelled();
  });
  while (!queue_.empty() && !free_seqs_.empty()) {
    std::shared_ptr<Job> job = std::move(queue_.front());
    queue_.pop_front();
    Running r;
    r.job = std::move(job);
    r.seq = free_seqs_.back();
    free_seqs_.pop_back();
    const JobSpec& spec = r.job->spec();
    const int64_t n_prompt = static_cast<int64_t>(spec.prompt.size());
    // The last sampled token is never fed back: prompt + max_new - 1 positions (as generate()).
    r.max_new = std::min(spec.max_tokens, context_.max_positions() - n_prompt + 1);
    if (spec.sampling.repetition_penalty != 1.0f) r.history = spec.prompt;
    running_.push_back(std::move(r));
  }
  stats_.queued = static_cast<int64_t>(queue_.size());
}

void Scheduler::release(Running& r, FinishReason reason, const std::string& error) {
  context_.truncate(r.seq, 0);  // the KV pages go back to the pool now
  free_seqs_.push_back(r.seq);
  if (metrics_ != nullptr) {
    const double seconds = std::chrono::duration<double>(Clock::now() - r.job->submitted).count();
    metrics_->observe_finished(seconds, r.fed, r.generated, finish_reason_name(reason));
  }
  r.job->finish(reason, error);
  r.job.reset();
}

void Scheduler::retire_cancelled() {
  for (Running& r : running_) {
    if (r.job->cancelled()) release(r, FinishReason::Cancelled);
  }
  std::erase_if(running_, [](const Running& r) { return r.job == nullptr; });
}

void Scheduler::step() {
  std::vector<SequenceInput> batch;
  std::vector<TokenSampling> sampling;
  std::vector<size_t> owner;  // running_ index of each batch entry
  const int64_t budget = context_.max_batch_tokens();
  int64_t tokens = 0;
  // Decode tokens first: one per sequence past its prompt.
  for (size_t i = 0; i < running_.size(); ++i) {
    Running& r = running_[i];
    const auto n_prompt = static_cast<int64_t>(r.job->spec().prompt.size());
    if (r.fed < n_prompt) continue;
    batch.push_back({r.seq, n_prompt + r.generated - 1, std::span<const int32_t>(&r.last, 1)});
    owner.push_back(i);
    ++tokens;
  }
  // Then prompt chunks, oldest request first, in what the step has left.
  int64_t prefill_left = std::min(options_.prefill_chunk, budget - tokens);
  for (size_t i = 0; i < running_.size() && prefill_left > 0; ++i) {
    Running& r = running_[i];
    const std::vector<int32_t>& prompt = r.job->spec().prompt;
    const auto n_prompt = static_cast<int64_t>(prompt.size());
    if (r.fed >= n_prompt) continue;
    const int64_t n = std::min(n_prompt - r.fed, prefill_left);
    batch.push_back(
        {r.seq, r.fed,
         std::span<const int32_t>(prompt).subspan(static_cast<size_t>(r.fed), static_cast<size_t>(n))});
    owner.push_back(i);
    prefill_left -= n;
    tokens += n;
  }
  for (size_t b = 0; b < batch.size(); ++b) {
    const Running& r = running_[owner[b]];
    sampling.push_back({r.job->spec().sampling, static_cast<uint64_t>(r.generated), r.history});
  }
  std::vector<int32_t> sampled(batch.size(), -1);
  ForwardOutputs outputs;
  outputs.sampling = sampling;
  outputs.sampled = sampled;
  // Log-probabilities when a request of the step asked for them: the widest top-k asked, for every row.
  int want = -1;
  for (size_t i : owner) want = std::max(want, running_[i].job->spec().logprobs);
  std::vector<float> logprobs(want >= 0 ? batch.size() : 0);
  std::vector<int32_t> top_ids(batch.size() * static_cast<size_t>(std::max(want, 0)));
  std::vector<float> top_logprobs(top_ids.size());
  outputs.sampled_logprobs = logprobs;
  outputs.top_logprobs = std::max(want, 0);
  outputs.top_ids = top_ids;
  outputs.top_id_logprobs = top_logprobs;

  const auto start = Clock::now();
  try {
    context_.forward(batch, outputs);
  } catch (const std::exception& e) {
    // A failed pass leaves these sequences' caches undefined: end their requests, keep serving the rest.
    for (size_t i : owner) {
      if (running_[i].job) release(running_[i], FinishReason::Error, e.what());
    }
    std::erase_if(running_, [](const Running& r) { return r.job == nullptr; });
    return;
  }
  if (metrics_ != nullptr) {
    metrics_->observe_step(static_cast<int64_t>(batch.size()), tokens,
                           std::chrono::duration<double>(Clock::now() - start).count());
  }
  for (size_t b = 0; b < batch.size(); ++b) {
    Running& r = running_[owner[b]];
    const JobSpec& spec = r.job->spec();
    const auto n_prompt = static_cast<int64_t>(spec.prompt.size());
    if (r.fed < n_prompt) {
      r.fed += static_cast<int64_t>(batch[b].tokens.size());
      if (r.fed < n_prompt) continue;  // a middle chunk: its draw is not a token of the output
    }
    const int32_t token = sampled[b];
    if (r.generated == 0 && metrics_ != nullptr) {
      metrics_->observe_first_token(std::chrono::duration<double>(Clock::now() - r.job->submitted).count());
    }
    r.last = token;
    ++r.generated;
    if (!r.history.empty()) r.history.push_back(token);
    TokenLogprob lp;
    if (spec.logprobs >= 0) {
      lp.logprob = logprobs[b];
      for (int j = 0; j < spec.logprobs; ++j) {
        const size_t at = b * static_cast<size_t>(want) + static_cast<size_t>(j);
        lp.top.emplace_back(top_ids[at], top_logprobs[at]);
      }
    }
    r.job->deliver(token, std::move(lp));
    if (std::find(spec.stop_ids.begin(), spec.stop_ids.end(), token) != spec.stop_ids.end()) {
      release(r, FinishReason::Stop);
    } else if (r.generated >= r.max_new) {
      release(r, FinishReason::Length);
    }
  }
  std::erase_if(running_, [](const Running& r) { return r.job == nullptr; });
  publish_stats(static_cast<int64_t>(batch.size()), tokens);
}

void Scheduler::publish_stats(int64_t sequences, int64_t tokens) {
  int64_t pages = 0;
  for (const Running& r : running_) {
    pages += (context_.length(r.seq) + kDefaultKvPageSize - 1) / kDefaultKvPageSize;
  }
  std::lock_guard lock(mutex_);
  stats_.running = static_cast<int64_t>(running_.size());
  stats_.kv_pages_used = pages;
  ++stats_.steps;
  stats_.last_batch_sequences = sequences;
  stats_.last_batch_tokens = tokens;
}

void Scheduler::run() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      if (stopping_) break;
      admit(lock);
      if (running_.empty()) {
        stats_.running = 0;
        stats_.kv_pages_used = 0;
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        continue;
      }
    }
    retire_cancelled();
    if (!running_.empty()) step();
  }
  // Shutting down: nothing more is computed.
  for (Running& r : running_) release(r, FinishReason::Error, "server shutting down");
  running_.clear();
  std::lock_guard lock(mutex_);
  for (auto& job : queue_) job->finish(FinishReason::Error, "server shutting down");
  queue_.clear();
}

}  // namespace qllm::server
