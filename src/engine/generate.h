// Text generation, gpt-fast style: prefill the prompt, then decode one token at a time and sample —
// nothing else. Stops at any stop id (the config's eos_token_id list and <|eot_id|>) or after
// max_new_tokens. Timings cover the model and the sampler, not tokenization.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "model/causal_lm.h"

namespace qllm {

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;  // generation ends after producing any of these (it is kept in the output)
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (a final stop id included)
  std::string stop_reason;      // "eos", "max_tokens", or "context" (the model's context is full)
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;  // the prompt's forward pass and the first sample
  double decode_seconds = 0;   // every later forward pass and sample
  int64_t decode_steps = 0;    // forward passes after the prefill

  double prefill_tokens_per_second() const {
    return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0;
  }
  double decode_tokens_per_second() const { return decode_seconds > 0 ? decode_steps / decode_seconds : 0; }
};

// Called with each new token as soon as it is sampled.
using TokenCallback = std::function<void(int32_t token)>;

// The stop ids of a model: the config's eos_token_id list, plus `extra` (e.g. <|eot_id|> of its tokenizer).
std::vector<int32_t> stop_ids_for(const LlamaConfig& config, std::span<const int32_t> extra = {});

// Generates from `prompt` on slot 0 of a freshly allocated KV cache of prompt + max_new_tokens - 1 positions
// (the last new token is never fed back).
// A prompt that does not fit in the context (max_position_embeddings) is an error before any compute;
// max_new_tokens is cut to what the context leaves.
GenerateResult generate(CausalLm& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                        const TokenCallback& on_token = {});

}  // namespace qllm
