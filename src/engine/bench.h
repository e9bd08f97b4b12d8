// Throughput of a model's context in llama-bench's terms: `pp<N>` = processing prompts of N tokens
// (tokens/s), `tg<N>` = generating N tokens one step at a time (tokens/s), for `batch` sequences at once;
// tokenization and sampling are not timed (random token ids; greedy choice of the next token after the
// timed step). Each figure is the mean and standard deviation over `reps` repetitions after one warm-up.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/causal_lm.h"

namespace qllm {

struct ThroughputResult {
  std::string test;                       // "pp512", "tg128"
  int batch = 1;                          // sequences processed together
  int64_t tokens = 0;                     // tokens per repetition (all sequences)
  std::vector<double> tokens_per_second;  // one per repetition
  double mean() const;
  double stddev() const;  // sample standard deviation (0 for one repetition)
};

// `batch` prompts of `prompt_tokens` random ids, fed in passes of at most the context's max_batch_tokens.
ThroughputResult bench_prefill(Context& context, int64_t prompt_tokens, int batch, int reps,
                               uint64_t seed = 0);
// `batch` sequences, each started with one token, then `new_tokens` decode steps of one token each.
ThroughputResult bench_decode(Context& context, int64_t new_tokens, int batch, int reps, uint64_t seed = 0);

}  // namespace qllm
