// Text generation, gpt-fast style: prefill the prompt, then decode one token at a time and sample —
// nothing else. Stops at any stop id or after max_new_tokens. Timings cover the model and the sampler, not
// tokenization.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/sampler.h"
#include "model/causal_lm.h"

namespace qllm {

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;  // generation ends after producing any of these (it is kept in the output)
  // The first `cached_prefix` prompt tokens are already in the sequence's cache (a chat's earlier turns): they
  // are not fed again. The caller vouches that they match; 0 starts the sequence afresh.
  int64_t cached_prefix = 0;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (a final stop id included)
  std::string stop_reason;      // "eos", "max_tokens", or "context" (the context is full)
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;  // the prompt's forward passes and the first sample
  double decode_seconds = 0;   // every later forward pass and sample
  int64_t decode_steps = 0;    // forward passes after the prefill

  double prefill_tokens_per_second() const {
    return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0;
  }
  double decode_tokens_per_second() const { return decode_seconds > 0 ? decode_steps / decode_seconds : 0; }
};

// Called with each new token as soon as it is sampled.
using TokenCallback = std::function<void(int32_t token)>;

// Generates from `prompt` as sequence `seq` of `context` (starting it afresh). A prompt that does not fit in
// the context is an error before any compute; max_new_tokens is cut to what the context leaves (the stop
// reason then says "context"). Prompts longer than the context's max_batch_tokens are fed in chunks.
GenerateResult generate(Context& context, int seq, std::span<const int32_t> prompt,
                        const GenerateOptions& options, const TokenCallback& on_token = {});

}  // namespace qllm
