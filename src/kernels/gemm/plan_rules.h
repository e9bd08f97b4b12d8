// The rules Auto's GEMM plans follow (W4A16 in w4a16.cpp, LLM.int8() in int8.cpp, the skinny kernels' CTA
// shape in skinny_plan.h): one table per GPU family, one line per rule saying what it decides. The plans read
// only these; the measurements behind every value are in docs/RESULTS.md §7, not here.
#pragma once

#include <cstdint>

namespace qllm::kernels {

struct W4A16PlanRules {
  bool wgmma = false;                // the TMA + wgmma kernel exists (sm_90a)
  int64_t skinny_up_to_tokens = 16;  // memory-bound: the skinny kernel, one weight pass per 8-32 tokens
  int64_t tiled_up_to_tokens = 64;   // then the tiled kernel while it beats the dequant path
  int64_t large_weight_elements = int64_t{1} << 26;  // lm_head-sized weights (elements) ...
  int64_t tiled_large_up_to_tokens = 128;   // ... keep the tiled kernel this far when wgmma does not serve
  int64_t tiled_small_tile_tokens = 32;     // tiled: 32-token tiles up to here (and to 64 on smaller weights)
  int64_t wgmma_split_min_k_steps = 64;     // split-K pays on the wgmma kernel only when K is this long
  int64_t wgmma_narrow_up_to_tokens = 128;  // 64-row wgmma tiles serve tiled_up_to_tokens + 1 to here
  // The wgmma cost model, in eighths of a wide tile's k step:
  int64_t wide_step_cost = 8;       // a k step of a 128- or 256-row tile
  int64_t narrow_step_cost = 3;     // a k step of a 64-row tile (latency-bound, half the tokens per warp)
  int64_t wave_fill_steps = 3;      // pipeline fill and epilogue per wave of CTAs, in wide steps
  int64_t reduce_launch_steps = 4;  // the split-K reduction's launch, in wide steps
  int64_t reduce_elements_per_step = 500'000;  // fp32 partials (per split) moved in one wide step's time
  int64_t token_tile_128_cost = 100;           // a 128-token tile's time, relative ...
  int64_t token_tile_256_cost = 190;           // ... to a 256-token tile's
  int64_t token_tile_256_underfill = 60;  // extra for a 256-token tile TMA fills < 3/4 (M % 256 in 1..191)
  // The skinny kernel computes X itself (x_prologue.h: the norm or SwiGLU before it folded in) up to here:
  // every CTA along N repeats that work for its tokens, so from 2 tokens the separate kernel is cheaper
  // (gpu_check.sh fuse-ab; RESULTS.md §13).
  int64_t fused_prologue_up_to_tokens = 1;
};

struct Int8PlanRules {
  bool wide = false;                    // the TMA + wgmma s8 kernel exists (sm_90a)
  int64_t skinny_up_to_tokens = 32;     // the skinny (mma.sync) kernel up to here, then the wide one
  int64_t long_row_k = 4096;            // rows longer than this take 8-token CTAs at decode (else 16)
  int64_t wide_weight_rows = 4096;      // N from here: 256-row tiles while they fill the GPU
  int64_t wide_prefill_tokens = 1024;   // past this, wide weights take 128-row tiles two per SM
  int64_t narrow_prefill_tokens = 256;  // past this, narrow weights take 128-row tiles (else 64-row x2)
  int64_t max_splits = 4;               // K splits at most (a cluster must find free SMs in one GPC)
};

struct SkinnyPlanRules {
  // Warps split K until every SM has a CTA; from 16 tokens per CTA an eighth of the SMs may idle if that
  // halves the activation copies (more rows per CTA).
  int64_t idle_sm_share_16_tokens = 8;  // 1 / this of the SMs may idle
};

// Measured on H100/H200 (sm_90). Other GPUs take the same thresholds without the sm_90a kernels (not tuned).
inline constexpr W4A16PlanRules kW4A16RulesSm90{.wgmma = true};
inline constexpr W4A16PlanRules kW4A16RulesPreSm90{.wgmma = false};
inline constexpr Int8PlanRules kInt8RulesSm90{.wide = true};
inline constexpr Int8PlanRules kInt8RulesPreSm90{.wide = false};
inline constexpr SkinnyPlanRules kSkinnyRules{};

}  // namespace qllm::kernels
