// Token log-probabilities host API: validates the parameters, then enqueues the kernel (token_logprobs.cu).
#include "kernels/sampling/token_logprobs.h"
#include "qllm/error.h"

namespace qllm {

void launch_token_logprobs(const TokenLogProbsParams& p, CUstream_st* stream) {
  QLLM_CHECK(p.dtype == DType::BF16 || p.dtype == DType::F16,
             "token_logprobs: logits must be bf16 or f16, not {}", dtype_name(p.dtype));
  QLLM_CHECK(p.rows >= 0 && p.rows <= INT32_MAX, "token_logprobs: {} rows (0..{})", p.rows, INT32_MAX);
  QLLM_CHECK(p.vocab >= 1 && p.vocab <= INT32_MAX, "token_logprobs: vocab {} outside 1..{}", p.vocab,
             INT32_MAX);
  QLLM_CHECK(p.nll != nullptr || p.logprob != nullptr,
             "token_logprobs: no output (set nll, logprob or both)");
  if (p.rows == 0) return;
  QLLM_CHECK(p.logits != nullptr && p.targets != nullptr, "token_logprobs: null logits or targets");
  detail::enqueue_token_logprobs(p, stream);
}

}  // namespace qllm
