// Next-token sampling with Hugging Face's semantics and order: repetition penalty, then temperature,
// top-k, top-p, min-p, then an inverse-CDF draw with the counter-based uniform of
// kernels/sampling/counter_rng.h: call number n of a Sampler (n = 0, 1, ..., counted whether or not it
// draws) uses counter_uniform(seed, n), the same uniform the GPU sampler (kernels/sampling/sampling.h) takes
// at step n, so both pick the same token from the same logits. Temperature 0 is greedy: the argmax after
// the repetition penalty.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace qllm {

struct SamplingParams {
  float temperature = 0.0f;         // 0: greedy
  int64_t top_k = 0;                // 0: off; keep the k largest logits (ties with the k-th kept)
  float top_p = 1.0f;               // 1: off; keep the smallest set of likeliest tokens with mass >= top_p
  float min_p = 0.0f;               // 0: off; drop tokens with p < min_p * p(likeliest)
  float repetition_penalty = 1.0f;  // 1: off; logits of tokens seen: positive / r, negative * r
  uint64_t seed = 0;

  void validate() const;  // qllm::Error naming the bad parameter
  bool greedy() const { return temperature == 0.0f; }
  std::string describe() const;  // "greedy" or "temperature 0.7, top-k 40, ..."
};

// HF RepetitionPenaltyLogitsProcessor: each distinct token of `history` has its logit divided by the
// penalty when positive and multiplied by it when negative.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, float penalty);

// The filters set removed tokens' logits to -infinity (HF's filter value), after temperature scaling.
void apply_top_k(std::span<float> logits, int64_t k);
void apply_top_p(std::span<float> logits, float top_p);
void apply_min_p(std::span<float> logits, float min_p);

int32_t argmax(std::span<const float> logits);  // first index of the largest value

// One draw: counter_uniform(params.seed, step) picks from `logits` [vocab] (used as scratch space) after the
// penalty over `history` and the filters. Sampler::sample is this with its own step counter.
int32_t sample_token(const SamplingParams& params, uint64_t step, std::span<float> logits,
                     std::span<const int32_t> history);

class Sampler {
 public:
  explicit Sampler(SamplingParams params);

  // Picks the next token from `logits` [vocab] given the tokens so far (prompt and generated);
  // `logits` is used as scratch space.
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);

  const SamplingParams& params() const { return params_; }
  uint64_t step() const { return step_; }  // the counter of the next call

 private:
  SamplingParams params_;
  uint64_t step_ = 0;
};

}  // namespace qllm
