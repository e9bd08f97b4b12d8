// How the skinny GEMM kernels (W4A16 and int8, decode-sized M) spread a weight matrix over the GPU. Both
// kernels run 8 warps per CTA, each warp on a 16-row weight tile; `warps_k` of them split K inside a CTA.
#pragma once

#include <cstdint>

#include "kernels/runtime/cuda_utils.h"

namespace qllm::kernels {

// The fewest warps splitting K (so the most weight rows per CTA) that still give every SM a CTA, counting
// the CTAs of every token block and of every K split that shared memory forces. Rows per CTA matter because
// each CTA copies its tokens' activations into shared memory: at 16 tokens that costs 64 / rows_per_cta
// times the CTA's (INT4) weight bytes, so from 16 tokens per CTA on an eighth of the SMs may idle if that
// halves the copies. Measured on H200 (docs/RESULTS.md, scripts/gpu_check.sh profile): W4A16 8192x2048 at
// M=16 takes 11.8 us with 128 CTAs of 64 rows, 12.6 us with 256 of 32, 17.5 us with 512 of 16; at M=1 the
// 256 CTAs win. The int8 kernel's best choices agree on all five Llama shapes.
inline int skinny_warps_k(int64_t row_tiles, int64_t token_blocks, int64_t splits, int tokens_per_cta,
                          int64_t sms) {
  const int64_t target = tokens_per_cta == 8 ? sms : sms - sms / 8;
  for (int warps_k : {1, 2, 4}) {
    if (ceil_div(row_tiles, 8 / warps_k) * token_blocks * splits >= target) return warps_k;
  }
  return 8;
}

}  // namespace qllm::kernels
