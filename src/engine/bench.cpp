#include "engine/bench.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <numeric>

#include "core/random.h"
#include "model/sampler.h"
#include "qllm/error.h"

namespace qllm {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, Rng& rng) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
  return ids;
}

void check_fits(const Context& context, int batch, int64_t positions, int reps) {
  QLLM_CHECK(batch >= 1 && batch <= context.max_sequences(), "bench: batch {} outside [1, {}]", batch,
             context.max_sequences());
  QLLM_CHECK(positions <= context.max_positions(), "bench: {} positions do not fit the context's {}",
             positions, context.max_positions());
  QLLM_CHECK(reps >= 1, "bench: reps must be >= 1, got {}", reps);
}

}  // namespace

double ThroughputResult::mean() const {
  return tokens_per_second.empty()
             ? 0.0
             : std::accumulate(tokens_per_second.begin(), tokens_per_second.end(), 0.0) /
                   static_cast<double>(tokens_per_second.size());
}

double ThroughputResult::stddev() const {
  if (tokens_per_second.size() < 2) return 0.0;
  const double m = mean();
  double sum = 0.0;
  for (double v : tokens_per_second) sum += (v - m) * (v - m);
  return std::sqrt(sum / static_cast<double>(tokens_per_second.size() - 1));
}

ThroughputResult bench_prefill(Context& context, int64_t prompt_tokens, int batch, int reps, uint64_t seed) {
  check_fits(context, batch, prompt_tokens, reps);
  const int64_t vocab = context.model().config().vocab_size;
  Rng rng(seed);
  std::vector<std::vector<int32_t>> prompts;
  for (int s = 0; s < batch; ++s) prompts.push_back(random_ids(prompt_tokens, vocab, rng));
  ThroughputResult result{fmt::format("pp{}", prompt_tokens), batch, prompt_tokens * batch, {}};
  const int64_t budget = context.max_batch_tokens();
  const std::vector<TokenSampling> greedy(static_cast<size_t>(batch));
  std::vector<int32_t> sampled;
  for (int rep = -1; rep < reps; ++rep) {  // rep -1: warm-up
    for (int s = 0; s < batch; ++s) context.truncate(s, 0);
    const auto start = Clock::now();
    // Passes of at most `budget` tokens, sequences in order, a long prompt split over passes.
    int s = 0;
    int64_t fed = 0;  // tokens of sequence s already fed
    while (s < batch) {
      std::vector<SequenceInput> pass;
      int64_t room = budget;
      while (s < batch && room > 0) {
        const int64_t n = std::min(room, prompt_tokens - fed);
        pass.push_back({s, fed,
                        std::span(prompts[static_cast<size_t>(s)])
                            .subspan(static_cast<size_t>(fed), static_cast<size_t>(n))});
        room -= n;
        fed += n;
        if (fed == prompt_tokens) {
          ++s;
          fed = 0;
        }
      }
      // The last pass draws the first new token of its sequences (greedy, on the model's device).
      ForwardOutputs outputs;
      if (s == batch) {
        sampled.resize(pass.size());
        outputs.sampling = std::span(greedy).first(pass.size());
        outputs.sampled = sampled;
      }
      context.forward(pass, outputs);
    }
    if (rep >= 0)
      result.tokens_per_second.push_back(static_cast<double>(result.tokens) / seconds_since(start));
  }
  return result;
}

ThroughputResult bench_decode(Context& context, int64_t new_tokens, int batch, int reps, uint64_t seed) {
  check_fits(context, batch, new_tokens + 1, reps);
  const int64_t vocab = context.model().config().vocab_size;
  Rng rng(seed);
  ThroughputResult result{fmt::format("tg{}", new_tokens), batch, new_tokens * batch, {}};
  std::vector<int32_t> tokens = random_ids(batch, vocab, rng);
  const std::vector<TokenSampling> greedy(static_cast<size_t>(batch));
  std::vector<int32_t> next(static_cast<size_t>(batch));
  std::vector<SequenceInput> step(static_cast<size_t>(batch));
  for (int rep = -1; rep < reps; ++rep) {
    for (int s = 0; s < batch; ++s) context.truncate(s, 0);
    double seconds = 0.0;
    for (int64_t i = 0; i <= new_tokens; ++i) {
      for (int s = 0; s < batch; ++s) step[static_cast<size_t>(s)] = {s, i, std::span(tokens).subspan(s, 1)};
      const auto start = Clock::now();
      ForwardOutputs outputs;
      outputs.sampling = greedy;
      outputs.sampled = next;  // each sequence's next input (greedy, on the model's device)
      context.forward(step, outputs);
      if (i > 0) seconds += seconds_since(start);  // step 0 feeds the first token (a one-token prompt)
      tokens.swap(next);
    }
    if (rep >= 0) result.tokens_per_second.push_back(static_cast<double>(result.tokens) / seconds);
  }
  return result;
}

}  // namespace qllm
