// Top log-probabilities host API: validates the parameters, then enqueues the kernel (top_logprobs.cu).
#include "kernels/sampling/top_logprobs.h"
#include "qllm/error.h"

namespace qllm {

void launch_top_logprobs(const TopLogProbsParams& p, CUstream_st* stream) {
  QLLM_CHECK(p.dtype == DType::BF16 || p.dtype == DType::F16,
             "top_logprobs: logits must be bf16 or f16, not {}", dtype_name(p.dtype));
  QLLM_CHECK(p.k >= 1 && p.k <= kMaxTopLogprobs, "top_logprobs: k = {} outside 1..{}", p.k, kMaxTopLogprobs);
  QLLM_CHECK(p.rows >= 0 && p.rows <= INT32_MAX, "top_logprobs: {} rows (0..{})", p.rows, INT32_MAX);
  QLLM_CHECK(p.vocab >= p.k && p.vocab <= INT32_MAX, "top_logprobs: vocab {} outside {}..{}", p.vocab, p.k,
             INT32_MAX);
  if (p.rows == 0) return;
  QLLM_CHECK(p.logits != nullptr && p.ids != nullptr && p.logprobs != nullptr,
             "top_logprobs: null logits or outputs");
  detail::enqueue_top_logprobs(p, stream);
}

}  // namespace qllm
