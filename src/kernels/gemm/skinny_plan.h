// How the skinny GEMM kernels (W4A16 and int8, decode-sized M) spread a weight matrix over the GPU. Both
// kernels run 8 warps per CTA, each warp on a 16-row weight tile; `warps_k` of them split K inside a CTA.
#pragma once

#include <cstdint>

#include "kernels/gemm/plan_rules.h"
#include "kernels/runtime/cuda_utils.h"

namespace qllm::kernels {

// The fewest warps splitting K (so the most weight rows per CTA) that still give every SM a CTA, counting
// the CTAs of every token block and of every K split that shared memory forces. Rows per CTA matter because
// each CTA copies its tokens' activations into shared memory: at 16 tokens that costs 64 / rows_per_cta
// times the CTA's (INT4) weight bytes, so from 16 tokens per CTA on a few SMs may idle if that halves the
// copies (kSkinnyRules, plan_rules.h).
inline int skinny_warps_k(int64_t row_tiles, int64_t token_blocks, int64_t splits, int tokens_per_cta,
                          int64_t sms) {
  const int64_t target = tokens_per_cta == 8 ? sms : sms - sms / kSkinnyRules.idle_sm_share_16_tokens;
  for (int warps_k : {1, 2, 4}) {
    if (ceil_div(row_tiles, 8 / warps_k) * token_blocks * splits >= target) return warps_k;
  }
  return 8;
}

}  // namespace qllm::kernels
