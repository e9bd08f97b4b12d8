// W4A16 GEMM, skinny path: Y[M, N] = X[M, K] @ W'[N, K]^T for small M (decode), on mma.sync (sm_80+).
//
// Memory-bound: every weight byte is read once, so the kernel's job is to keep enough loads in flight and
// spend few instructions per weight. How:
//  - weights are the MMA's A operand (Y^T = W X^T) and tokens its n8 dimension: M = 1 wastes 7/8 of an
//    MMA, not 15/16, and a 16-byte load per thread is already the A fragment of four k16 steps (repacked
//    offline, docs/FORMATS.md), streamed straight from global memory into registers, a few steps ahead;
//  - dequantization is one lop3 + one packed subtract per pair: (128 + q) - (128 + z) = q - z exactly; the
//    scale multiplies the fp32 partial sum of each group instead of every weight (cheaper, and exact);
//  - min offset (GGUF Q4_1, w' = u * s + m): z = 0, and m multiplies the group's sum of each token's
//    activations, which one more MMA per k16 step gives from an A fragment of ones (every row of its output
//    is that sum): the weights stay exact integers, and MMAs are cheap in a memory-bound kernel;
//  - the CTA's whole slice of activations is copied into shared memory once, so the main loop has no
//    barrier: every warp streams its weights at its own pace;
//  - at decode the CTA may compute X itself from the norm's or SwiGLU's inputs (x_prologue.h): the
//    elementwise kernel before is folded into this launch;
//  - small N is split along K across the warps of a CTA (reduced through shared memory) until the GPU has
//    enough CTAs; across CTAs only when the activation slice would not fit in shared memory: the last CTA
//    to finish a tile adds the partial sums in a fixed order (deterministic) and writes the output.
// Included by w4a16_skinny_bf16.cu and w4a16_skinny_f16.cu (one instantiation file per activation dtype,
// so that nvcc compiles them in parallel).
#pragma once

#include <algorithm>

#include "kernels/common/dependent_launch.cuh"
#include "kernels/gemm/w4a16_device.cuh"
#include "kernels/gemm/w4a16_launch.h"
#include "kernels/gemm/x_prologue.cuh"
#include "kernels/runtime/cuda_utils.h"

namespace qllm::kernels::skinny {

using namespace w4a16;

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
static_assert(kThreads == kSkinnyThreads, "w4a16_launch.h states the CTA size to the host");
constexpr int kStepK = 64;  // weights per row per step: one 16-byte load per thread
// Weight steps in flight per warp: 8-token CTAs run 4 per SM under a 64-register cap, so they keep 3 (32
// warps x 3 x 512 bytes per SM is still twice what H200's bandwidth needs in flight); the others keep 4, but
// the min-offset 16-token variant (3 CTAs per SM, an 80-register cap that its activation sums exceed with 4:
// ptxas spilled) keeps 3 as well, still 1.5 times the bytes in flight needed.
template <int kTokTiles, bool kMinOffset>
constexpr int kPrefetch = kTokTiles == 1 || (kMinOffset && kTokTiles == 2) ? 3 : 4;
constexpr int kRowPad = 8;  // elements of padding per activation row in shared memory: conflict-free ldmatrix

// How scale groups fall on the 64-wide k steps: kGroupsOfSteps when every group is whole steps (g % 64 == 0:
// one check per step), kGroupsOfK16 otherwise (a countdown per k16 MMA step: g = 16, 32, 48, ...).
constexpr int kGroupsOfSteps = 0;
constexpr int kGroupsOfK16 = 1;

// Resident CTAs per SM (4, 3, 2 for 8, 16, 32 tokens: register caps 64, 85, 128) keep enough weight loads in
// flight. kMinOffset: the zero-point slot holds minimums (instantiated with kGroupsOfK16 only, which serves
// every group size: one variant less to compile for a format whose groups are 32).
template <typename T, int kTokTiles, int kWarpsK, int kGroupMode, bool kMinOffset>
__global__ void __launch_bounds__(kThreads, kTokTiles == 1 ? 4 : (kTokTiles == 2 ? 3 : 2))
    w4a16_skinny_kernel(const W4A16KernelArgs args, const XPrologue prologue) {
  constexpr int kTokens = 8 * kTokTiles;
  constexpr int kTilesPerCta = kWarps / kWarpsK;  // 16-row weight tiles per CTA
  extern __shared__ __align__(16) uint16_t smem[];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int warp_tile = warp % kTilesPerCta, warp_k = warp / kTilesPerCta;
  const int tile = blockIdx.x * kTilesPerCta + warp_tile;  // this warp's 16-row weight tile
  const bool active = tile < args.n / 16;
  const int split = blockIdx.y;
  const int token_base = blockIdx.z * kTokens;
  const int k_steps = args.k / kStepK;
  const int cta_begin = split * args.steps_per_split;  // this CTA's k steps: [cta_begin, cta_end)
  const int cta_end = min(cta_begin + args.steps_per_split, k_steps);
  const int cta_steps = max(cta_end - cta_begin, 0);
  // This warp's steps: a contiguous share of the CTA's.
  const int per_warp = (cta_steps + kWarpsK - 1) / kWarpsK;
  const int warp_begin = min(cta_begin + warp_k * per_warp, cta_end);
  const int steps = min(per_warp, cta_end - warp_begin);

  // ---- weights first: this lane's 16 bytes of unit (tile, step), kAhead steps in flight ----
  constexpr int kAhead = kPrefetch<kTokTiles, kMinOffset>;
  const auto* units = static_cast<const uint4*>(args.qweight) +
                      (static_cast<int64_t>(tile) * k_steps + warp_begin) * 32 + lane;
  uint4 w_regs[kAhead];
#pragma unroll
  for (int p = 0; p < kAhead; ++p) {
    if (active && p < steps) w_regs[p] = load_weights(units + p * 32);
  }

  // Scale and zero-point pairs of rows (g, g + 8), raw 16-bit pairs; the next group's loaded one group ahead,
  // walking the tile's groups 8 words apart (the L2 fetches four groups to a line).
  constexpr uint32_t kSymmetricZero = (T::kNibbleMagic + 8) | ((T::kNibbleMagic + 8) << 16);
  constexpr uint32_t kNoZero = T::kNibbleMagic | (T::kNibbleMagic << 16);  // min offset: z = 0
  // The zero-point slot is read: zero points, or (kMinOffset) the minimums, which zero_now/next then hold.
  const bool asymmetric = args.zero_offsets != nullptr;
  const int tile_pairs = tile * args.groups * 8 + g;   // fits: N / 16 * groups * 8 = N * K / group_k / 2
  const int pairs_end = tile_pairs + args.groups * 8;  // past the tile's last group
  int next_pair = tile_pairs + warp_begin * 4 / args.group_steps * 8;
  // Steps (kGroupsOfSteps) or k16 steps (kGroupsOfK16) left in the current group.
  const int group_length = kGroupMode == kGroupsOfSteps ? args.group_steps / 4 : args.group_steps;
  int group_left = kGroupMode == kGroupsOfSteps ? group_length - warp_begin % group_length
                                                : group_length - warp_begin * 4 % group_length;
  uint32_t scale_now = 0, scale_next = 0, zero_now = kSymmetricZero, zero_next = kSymmetricZero;
  if (active && steps > 0) {
    scale_now = load_pair(args.scales + next_pair);
    if (asymmetric) zero_now = load_pair(args.zero_offsets + next_pair);
    next_pair += 8;
    if (next_pair < pairs_end) {
      scale_next = load_pair(args.scales + next_pair);
      if (asymmetric) zero_next = load_pair(args.zero_offsets + next_pair);
    }
  }
  uint32_t zero_lo = kMinOffset ? kNoZero : low_pair(zero_now),
           zero_hi = kMinOffset ? kNoZero : high_pair(zero_now);

  // Launched as a dependent (dependent_launch.cuh): the weight and scale loads above overlap the previous
  // kernel (the norm, attention or activation that writes X); X is read only from here on.
  wait_for_previous_kernel();
  let_next_kernel_start();  // every CTA is resident: the next kernel may be scheduled (it waits for Y)

  // ---- the CTA's activation slice [kTokens x cta_steps * 64] into shared memory, once ----
  // Only the rows of real tokens: a missing token's row stays unwritten, because its garbage can only reach
  // its own MMA output column (n = token), which is never stored. At M = 1 that is 1 row of 8. Columns past
  // X's (K not a multiple of 64) are zero-filled: they meet zero weights, and garbage there could be NaN.
  const int row_elems = args.steps_per_split * kStepK + kRowPad;
  const int rows = min(kTokens, args.m - token_base);
  // 8-token CTAs (decode) may compute X instead (x_prologue.h: the norm or SwiGLU before, folded in); the
  // other widths compile without that code, and the min-offset variants without the norm (ptxas spilled).
  const XPrologueKind prologue_kind = kTokTiles == 1 ? prologue.kind : XPrologueKind::None;
  if constexpr (kTokTiles == 1) {
    if (!kMinOffset && prologue_kind == XPrologueKind::ResidualRmsNorm) {
      // One CTA per token block writes the updated residual (the grid's first along N and K).
      prologue::residual_rmsnorm<T>(prologue, args.x_cols, token_base, rows, smem, row_elems,
                                    cta_begin * kStepK, cta_steps * kStepK,
                                    blockIdx.x == 0 && blockIdx.y == 0);
    } else if (prologue_kind == XPrologueKind::Swiglu) {
      prologue::swiglu<T>(prologue, args.x_cols, token_base, rows, smem, row_elems, cta_begin * kStepK,
                          cta_steps * kStepK);
    }
  }
  if (prologue_kind == XPrologueKind::None) {
    const auto* x_base = static_cast<const uint16_t*>(args.x);
    const auto* x = x_base + static_cast<int64_t>(token_base) * args.x_cols + cta_begin * kStepK;
    const int chunks_per_row = cta_steps * (kStepK / 8);
    const int cols_left = args.x_cols - cta_begin * kStepK;  // x_cols % 8 == 0: chunks are all in or out
    for (int chunk = threadIdx.x; chunk < rows * chunks_per_row; chunk += kThreads) {
      const int row = chunk / chunks_per_row, col = (chunk % chunks_per_row) * 8;
      const bool valid = col < cols_left;
      cp_async_16(smem + row * row_elems + col,
                  valid ? x + static_cast<int64_t>(row) * args.x_cols + col : x_base, valid);
    }
    cp_async_commit();
    cp_async_wait<0>();
  }
  __syncthreads();  // the activation slice is in

  float acc[kTokTiles][4] = {};        // output: rows (g, g+8) x tokens (2t, 2t+1) per token tile
  float group_acc[kTokTiles][4] = {};  // the current scale group's unscaled partial sums
  // kMinOffset: the current group's activation sums per token (all four values of a token tile's MMA output
  // hold them: rows g and g + 8 alike). Unused (and optimised away) otherwise.
  float xsum_acc[kTokTiles][4] = {};
  // Ends the current scale group: its partial sums, times the scales, go into the output (with a min offset
  // also the minimums times the activation sums); moves to the next.
  auto flush_group = [&] {
    const float scale_lo = to_float<T>(scale_now & 0xffffu), scale_hi = to_float<T>(scale_now >> 16);
#pragma unroll
    for (int tt = 0; tt < kTokTiles; ++tt) {
      acc[tt][0] += scale_lo * group_acc[tt][0];
      acc[tt][1] += scale_lo * group_acc[tt][1];
      acc[tt][2] += scale_hi * group_acc[tt][2];
      acc[tt][3] += scale_hi * group_acc[tt][3];
      if constexpr (kMinOffset) {
        const float min_lo = to_float<T>(zero_now & 0xffffu), min_hi = to_float<T>(zero_now >> 16);
        acc[tt][0] += min_lo * xsum_acc[tt][0];
        acc[tt][1] += min_lo * xsum_acc[tt][1];
        acc[tt][2] += min_hi * xsum_acc[tt][2];
        acc[tt][3] += min_hi * xsum_acc[tt][3];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) group_acc[tt][i] = 0.f, xsum_acc[tt][i] = 0.f;
    }
    group_left = group_length;
    scale_now = scale_next;
    zero_now = zero_next;
    if constexpr (!kMinOffset) {
      zero_lo = low_pair(zero_now);
      zero_hi = high_pair(zero_now);
    }
    next_pair += 8;
    if (next_pair < pairs_end) {
      scale_next = load_pair(args.scales + next_pair);
      if (asymmetric) zero_next = load_pair(args.zero_offsets + next_pair);
    }
  };
  // One 64-wide step: two ldmatrix.x4 per token tile give the B fragments of four k16 MMAs.
  const uint16_t* x_step =
      smem + (lane & 7) * row_elems + (warp_begin - cta_begin) * kStepK + 8 * (lane >> 3);
  const uint32_t one = pack2<T>(1.0f, 1.0f);
  const uint32_t ones[4] = {one, one, one, one};  // kMinOffset: the A fragment whose product sums X
  auto compute_step = [&](const uint4& w) {
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      uint32_t b[kTokTiles][4];
#pragma unroll
      for (int tt = 0; tt < kTokTiles; ++tt) ldmatrix_x4(b[tt], x_step + tt * 8 * row_elems + half * 32);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        uint32_t a[4];
        dequant_step<T>(words[2 * half + j], zero_lo, zero_hi, a);
#pragma unroll
        for (int tt = 0; tt < kTokTiles; ++tt) {
          mma_16816<T>(group_acc[tt], a, b[tt][2 * j], b[tt][2 * j + 1]);
          if constexpr (kMinOffset) mma_16816<T>(xsum_acc[tt], ones, b[tt][2 * j], b[tt][2 * j + 1]);
        }
        if constexpr (kGroupMode == kGroupsOfK16) {
          if (--group_left == 0) flush_group();
        }
      }
    }
    x_step += kStepK;
    if constexpr (kGroupMode == kGroupsOfSteps) {
      if (--group_left == 0) flush_group();
    }
  };

  if (active) {
    // Full rounds of kAhead steps: the ring index p is a compile-time constant (no register moves).
    const uint4* next = units + kAhead * 32;
    int s = 0;
    for (; s + kAhead <= steps; s += kAhead) {
#pragma unroll
      for (int p = 0; p < kAhead; ++p) {
        const uint4 w = w_regs[p];
        if (s + p + kAhead < steps) w_regs[p] = load_weights(next);
        next += 32;
        compute_step(w);
      }
    }
#pragma unroll
    for (int p = 0; p < kAhead; ++p) {
      if (s + p < steps) compute_step(w_regs[p]);
    }
    if (group_left != group_length) flush_group();  // the warp's range ended inside a group
  }

  // ---- reduce the kWarpsK k-slices of each tile through shared memory, in slice order ----
  if constexpr (kWarpsK > 1) {
    __syncthreads();  // everyone is done with the activations: reuse their space
    reduce_k_slices<kTokTiles, kWarpsK, kTilesPerCta>(acc, reinterpret_cast<float*>(smem), warp_k, warp_tile,
                                                      lane);
  }

  // ---- epilogue (warps of slice 0 hold the sums): write Y, or this split's partial sums ----
  const bool writer = active && warp_k == 0;
  const int row0 = tile * 16 + g;
  auto* y = static_cast<uint16_t*>(args.y);
  if (args.splits == 1) {
    if (!writer) return;
#pragma unroll
    for (int tt = 0; tt < kTokTiles; ++tt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int token = token_base + tt * 8 + 2 * t + (i & 1), row = row0 + 8 * (i >> 1);
        if (token < args.m && row < args.n_out)
          y[static_cast<int64_t>(token) * args.n_out + row] = from_float<T>(acc[tt][i]);
      }
    }
    return;
  }
  if (writer) {
#pragma unroll
    for (int tt = 0; tt < kTokTiles; ++tt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int token = token_base + tt * 8 + 2 * t + (i & 1);
        if (token < args.m) {
          args.partials[(static_cast<int64_t>(split) * args.m + token) * args.n + row0 + 8 * (i >> 1)] =
              acc[tt][i];
        }
      }
    }
  }
  const int first_row = blockIdx.x * kTilesPerCta * 16;
  splitk_finish<T>(args, blockIdx.z * gridDim.x + blockIdx.x, first_row,
                   min(kTilesPerCta * 16, args.n - first_row), token_base, min(kTokens, args.m - token_base));
}

template <typename T, int kTokTiles, int kWarpsK, int kGroupMode, bool kMinOffset>
void launch_config(const W4A16KernelArgs& args, const XPrologue& prologue, cudaStream_t stream) {
  constexpr int kTokens = 8 * kTokTiles;
  const int smem =
      std::max<int>(kTokens * (args.steps_per_split * kStepK + kRowPad) * 2, kWarps * kTokTiles * 4 * 32 * 4);
  // Allowed all the shared memory the device offers once (thread-safe static init); each launch still asks
  // only for what it uses, which is what occupancy depends on.
  static const bool configured = [] {
    allow_all_dynamic_shared_memory(
        reinterpret_cast<const void*>(w4a16_skinny_kernel<T, kTokTiles, kWarpsK, kGroupMode, kMinOffset>));
    return true;
  }();
  (void)configured;
  if (args.configure_only) return;
  const dim3 grid((args.n + 16 * (kWarps / kWarpsK) - 1) / (16 * (kWarps / kWarpsK)), args.splits,
                  (args.m + kTokens - 1) / kTokens);
  launch_dependent(w4a16_skinny_kernel<T, kTokTiles, kWarpsK, kGroupMode, kMinOffset>, grid, dim3(kThreads),
                   static_cast<size_t>(smem), stream, args, prologue);
}

template <typename T, int kTokTiles, int kGroupMode, bool kMinOffset>
void launch_tokens(const W4A16KernelArgs& args, const XPrologue& prologue, int warps_k, cudaStream_t stream) {
  switch (warps_k) {
    case 1:
      launch_config<T, kTokTiles, 1, kGroupMode, kMinOffset>(args, prologue, stream);
      break;
    case 2:
      launch_config<T, kTokTiles, 2, kGroupMode, kMinOffset>(args, prologue, stream);
      break;
    case 4:
      launch_config<T, kTokTiles, 4, kGroupMode, kMinOffset>(args, prologue, stream);
      break;
    default:
      launch_config<T, kTokTiles, 8, kGroupMode, kMinOffset>(args, prologue, stream);
      break;
  }
}

template <typename T, int kGroupMode, bool kMinOffset>
void launch_group_mode(const W4A16KernelArgs& args, const XPrologue& prologue, int tok_tiles, int warps_k,
                       cudaStream_t stream) {
  switch (tok_tiles) {
    case 1:
      launch_tokens<T, 1, kGroupMode, kMinOffset>(args, prologue, warps_k, stream);
      break;
    case 2:
      launch_tokens<T, 2, kGroupMode, kMinOffset>(args, prologue, warps_k, stream);
      break;
    default:
      launch_tokens<T, 4, kGroupMode, kMinOffset>(args, prologue, warps_k, stream);
      break;
  }
}

template <typename T>
void launch_typed(const W4A16KernelArgs& args, const XPrologue& prologue, int tok_tiles, int warps_k,
                  cudaStream_t stream) {
  if (args.min_offset) {
    launch_group_mode<T, kGroupsOfK16, true>(args, prologue, tok_tiles, warps_k, stream);
  } else if (args.group_steps % 4 == 0) {
    launch_group_mode<T, kGroupsOfSteps, false>(args, prologue, tok_tiles, warps_k, stream);
  } else {
    launch_group_mode<T, kGroupsOfK16, false>(args, prologue, tok_tiles, warps_k, stream);
  }
}

}  // namespace qllm::kernels::skinny

namespace qllm::kernels {

template <typename T>
void launch_w4a16_skinny(const W4A16KernelArgs& args, int tok_tiles, int warps_k, cudaStream_t stream,
                         const XPrologue& prologue) {
  skinny::launch_typed<T>(args, prologue, tok_tiles, warps_k, stream);
}

}  // namespace qllm::kernels
