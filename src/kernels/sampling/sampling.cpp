// Sampling host API: validates the parameters, then enqueues the kernel (sampling.cu).
#include <cmath>

#include "kernels/sampling/sampling.h"
#include "qllm/error.h"

namespace qllm {

void check_sampling_row(const SamplingRowState& r) {
  QLLM_CHECK(std::isfinite(r.temperature) && r.temperature >= 0.0f,
             "sampling: temperature must be >= 0, got {}", r.temperature);
  QLLM_CHECK(r.top_k >= 0, "sampling: top-k must be >= 0 (0 = off), got {}", r.top_k);
  QLLM_CHECK(r.top_p > 0.0f && r.top_p <= 1.0f, "sampling: top-p must be in (0, 1], got {}", r.top_p);
  QLLM_CHECK(r.min_p >= 0.0f && r.min_p <= 1.0f, "sampling: min-p must be in [0, 1], got {}", r.min_p);
  QLLM_CHECK(std::isfinite(r.repetition_penalty) && r.repetition_penalty > 0.0f,
             "sampling: repetition penalty must be > 0 (1 = off), got {}", r.repetition_penalty);
}

void launch_sample_tokens(const SampleTokensParams& p, CUstream_st* stream) {
  QLLM_CHECK(p.dtype == DType::BF16 || p.dtype == DType::F16, "sampling: logits must be bf16 or f16, not {}",
             dtype_name(p.dtype));
  QLLM_CHECK(p.rows >= 0 && p.rows <= INT32_MAX, "sampling: {} rows (0..{})", p.rows, INT32_MAX);
  QLLM_CHECK(p.vocab >= 1 && p.vocab <= kMaxSamplingVocab, "sampling: vocab {} outside 1..{}", p.vocab,
             kMaxSamplingVocab);
  QLLM_CHECK(p.window >= 0 && p.window <= (int64_t{1} << 20), "sampling: recent-id window {} outside 0..2^20",
             p.window);
  if (p.rows == 0) return;
  QLLM_CHECK(p.logits != nullptr && p.row_state != nullptr && p.tokens != nullptr,
             "sampling: null logits, row state or tokens");
  QLLM_CHECK(p.window == 0 || p.recent_ids != nullptr, "sampling: a window of {} recent ids but no array",
             p.window);
  detail::enqueue_sample_tokens(p, stream);
}

}  // namespace qllm
