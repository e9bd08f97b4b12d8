// Token log-probabilities on the GPU and their CPU reference (token_logprobs_ref.cpp, the spec): for each row
// of logits T [rows, vocab] and its target id,
//   nll[r] = log(sum_i exp(f64(l_i) - m)) + m - f64(l_target),   m = max_i l_i (f32)
// with f32 loads, the max subtracted, exp and the sum in double (the CPU forward pass's
// cpu::negative_log_likelihood). Targets are int32 in device memory; -1 = not scored: nll 0 (and logprob 0).
// Perplexity uses nll with the next-token targets; the server's logprobs use `logprob` (= f32(-nll)) with the
// sampled ids as targets (the model's distribution, before any sampling filter).
// A target outside [-1, vocab) or a non-finite logit sets *error_flag (when given) and writes NaN.
// Bound: memory, two passes over the row (the second from L2); one CTA per row.
#pragma once

#include <cstdint>

#include "qllm/dtype.h"

struct CUstream_st;  // cudaStream_t without the CUDA headers (the reference builds without them)

namespace qllm {

// Device pointers for launch_token_logprobs, host pointers (16-bit data as raw bits) for the reference.
struct TokenLogProbsParams {
  int64_t rows = 0;
  int64_t vocab = 0;                 // 1 .. 2^31 - 1
  DType dtype = DType::BF16;         // of the logits: BF16 or F16
  const void* logits = nullptr;      // T [rows, vocab]
  const int32_t* targets = nullptr;  // [rows]
  double* nll = nullptr;             // [rows], may be null
  float* logprob = nullptr;          // [rows], may be null (at least one of nll and logprob is set)
  int* error_flag = nullptr;         // may be null
};

void launch_token_logprobs(const TokenLogProbsParams& params, CUstream_st* stream);
void token_logprobs_ref(const TokenLogProbsParams& params);

namespace detail {
void enqueue_token_logprobs(const TokenLogProbsParams& params, CUstream_st* stream);  // validated parameters
}  // namespace detail

}  // namespace qllm
