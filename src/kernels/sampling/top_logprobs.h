// The most likely next tokens and their log-probabilities, on the GPU, and the CPU reference
// (top_logprobs_ref.cpp, the spec): for each row of logits T [rows, vocab], the k ids of the largest logits,
// largest first, ties in logit broken by the lower id, and
//   logprob(i) = f32(f64(l_i) - (log(sum_j exp(f64(l_j) - m)) + m)),   m = max_j l_j (f32),
// the same log-softmax as token_logprobs.h (the model's distribution, before any sampling filter). The server
// returns them as OpenAI's top_logprobs. A non-finite logit sets *error_flag (when given) and writes id -1
// and NaN. Bound: memory, 2 + k passes over the row (from L2 after the first); one CTA per row: for the few
// rows of a decode step whose requests asked for them.
#pragma once

#include <cstdint>
#include <span>

#include "qllm/dtype.h"

struct CUstream_st;  // cudaStream_t without the CUDA headers (the reference builds without them)

namespace qllm {

inline constexpr int kMaxTopLogprobs = 20;  // OpenAI's limit

// Device pointers for launch_top_logprobs, host pointers (16-bit data as raw bits) for the reference.
struct TopLogProbsParams {
  int64_t rows = 0;
  int64_t vocab = 0;             // k .. 2^31 - 1
  int k = 1;                     // 1 .. kMaxTopLogprobs
  DType dtype = DType::BF16;     // of the logits: BF16 or F16
  const void* logits = nullptr;  // T [rows, vocab]
  int32_t* ids = nullptr;        // [rows, k]
  float* logprobs = nullptr;     // [rows, k]
  int* error_flag = nullptr;     // may be null
};

void launch_top_logprobs(const TopLogProbsParams& params, CUstream_st* stream);
void top_logprobs_ref(const TopLogProbsParams& params);

// One row of f32 logits (the CPU engine's, and the reference's after the 16-bit load): false, with ids -1 and
// NaN log-probs, when a logit is not finite. ids and logprobs hold k values.
bool top_logprobs_of_row(std::span<const float> logits, int k, int32_t* ids, float* logprobs);

namespace detail {
void enqueue_top_logprobs(const TopLogProbsParams& params, CUstream_st* stream);  // validated parameters
}  // namespace detail

}  // namespace qllm
