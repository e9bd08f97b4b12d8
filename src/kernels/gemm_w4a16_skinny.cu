// W4A16 GEMM, skinny path: Y[M, N] = X[M, K] @ W'[N, K]^T for small M (decode), on mma.sync (sm_80+).
//
// Memory-bound: every weight byte is read once, so the kernel's job is to keep enough loads in flight and
// spend few instructions per weight. How:
//  - weights are the MMA's A operand (Y^T = W X^T) and tokens its n8 dimension: M = 1 wastes 7/8 of an
//    MMA, not 15/16, and a 16-byte load per thread is already the A fragment of four k16 steps (repacked
//    offline, docs/FORMATS.md), streamed straight from global memory into registers, kPrefetch steps ahead;
//  - dequantization is one lop3 + one packed subtract per pair: (128 + q) - (128 + z) = q - z exactly; the
//    scale multiplies the fp32 partial sum of each group instead of every weight (cheaper, and exact);
//  - activations (a few KB) go through a cp.async ring in shared memory and ldmatrix into B fragments;
//  - small N gets split-K so that all SMs stream; the last CTA to finish a tile adds the partial sums in a
//    fixed order (deterministic) and writes the output.
#include "kernels/gemm_w4a16_device.cuh"
#include "kernels/gemm_w4a16_launch.h"

namespace qllm::kernels {

namespace {

using namespace w4a16;

constexpr int kWarps = 8;                    // one 16-row weight tile per warp: 128 rows per CTA
constexpr int kThreads = kWarps * 32;
constexpr int kStepK = 64;                   // weights per row per step: one 16-byte load per thread
constexpr int kStages = 4;                   // activation ring depth (steps)
constexpr int kPrefetch = 2;                 // weight steps in flight per thread beyond the current one
constexpr int kRowPad = 8;                   // elements of padding per smem row: conflict-free ldmatrix
constexpr int kSmemRow = kStepK + kRowPad;   // elements per activation row in shared memory

template <typename T, int kTokTiles>
__global__ void __launch_bounds__(kThreads) w4a16_skinny_kernel(const W4A16KernelArgs args) {
  constexpr int kTokens = 8 * kTokTiles;
  __shared__ __align__(16) uint16_t x_smem[kStages][kTokens][kSmemRow];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int tile = blockIdx.x * kWarps + warp;  // this warp's 16-row weight tile
  const bool active = tile < args.n / 16;
  const int split = blockIdx.y;
  const int token_base = blockIdx.z * kTokens;
  const int k_steps = args.k / kStepK;
  const int step_begin = split * args.steps_per_split;
  const int step_end = min(step_begin + args.steps_per_split, k_steps);
  const int steps = max(step_end - step_begin, 0);

  // ---- activation ring: step s's [kTokens x 64] slice of X into stage s % kStages ----
  const auto* x = static_cast<const uint16_t*>(args.x);
  auto load_x_step = [&](int s) {
    if (s < steps) {
      const int k0 = (step_begin + s) * kStepK;
      for (int chunk = threadIdx.x; chunk < kTokens * 8; chunk += kThreads) {
        const int row = chunk / 8, col = (chunk % 8) * 8;
        const int token = token_base + row;
        const bool valid = token < args.m;
        cp_async_16(&x_smem[s % kStages][row][col], x + (valid ? static_cast<int64_t>(token) * args.k + k0 + col : 0),
                    valid);
      }
    }
    cp_async_commit();  // always commit, so that wait_group counts steps
  };

  // ---- weights: this lane's 16 bytes of unit (tile, step) ----
  const auto* units = static_cast<const uint4*>(args.qweight) + static_cast<int64_t>(tile) * k_steps * 32 + lane;
  uint4 w_regs[kPrefetch + 1];
#pragma unroll
  for (int p = 0; p <= kPrefetch; ++p) {
    if (active && p < steps) w_regs[p] = load_weights(units + static_cast<int64_t>(step_begin + p) * 32);
  }
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) load_x_step(s);

  // Scale and zero-point pairs of rows (g, g + 8), raw 16-bit pairs. The next group's pair is loaded one
  // group ahead, so the loads' latency hides behind a group's MMAs.
  const uint32_t* scale_pairs = args.scales + static_cast<int64_t>(tile) * args.groups * 8 + g;
  const uint32_t* zero_pairs =
      args.zero_offsets ? args.zero_offsets + static_cast<int64_t>(tile) * args.groups * 8 + g : nullptr;
  constexpr uint32_t kSymmetricZero = (T::kMagic + 8) | ((T::kMagic + 8) << 16);
  const int k16 = step_begin * 4;  // global index of the first k16 step
  int group = k16 / args.group_steps;
  int group_left = args.group_steps - k16 % args.group_steps;  // k16 steps left in the current group
  uint32_t scale_now = 0, scale_next = 0, zero_now = kSymmetricZero, zero_next = kSymmetricZero;
  if (active && steps > 0) {
    scale_now = scale_pairs[group * 8];
    if (zero_pairs) zero_now = zero_pairs[group * 8];
    if (group + 1 < args.groups) {
      scale_next = scale_pairs[(group + 1) * 8];
      if (zero_pairs) zero_next = zero_pairs[(group + 1) * 8];
    }
  }
  uint32_t zero_lo = low_pair(zero_now), zero_hi = high_pair(zero_now);

  float acc[kTokTiles][4] = {};        // output: rows (g, g+8) x tokens (2t, 2t+1) per token tile
  float group_acc[kTokTiles][4] = {};  // the current scale group's unscaled partial sums
  for (int s = 0; s < steps; ++s) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // step s's activations are in; every warp is done with step s - 1's stage
    load_x_step(s + kStages - 1);

    const uint4 w = w_regs[0];
#pragma unroll
    for (int p = 0; p < kPrefetch; ++p) w_regs[p] = w_regs[p + 1];
    if (active && s + kPrefetch + 1 < steps) {
      w_regs[kPrefetch] = load_weights(units + static_cast<int64_t>(step_begin + s + kPrefetch + 1) * 32);
    }
    if (!active) continue;

    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int half = 0; half < 2; ++half) {  // two k16 steps per ldmatrix.x4
      uint32_t b[kTokTiles][4];
#pragma unroll
      for (int tt = 0; tt < kTokTiles; ++tt) {
        ldmatrix_x4(b[tt], &x_smem[s % kStages][tt * 8 + (lane & 7)][half * 32 + 8 * (lane >> 3)]);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        uint32_t a[4];
        dequant_step<T>(words[2 * half + j], zero_lo, zero_hi, a);
#pragma unroll
        for (int tt = 0; tt < kTokTiles; ++tt) mma_16816<T>(group_acc[tt], a, b[tt][2 * j], b[tt][2 * j + 1]);
        const bool split_done = s == steps - 1 && half == 1 && j == 1;
        if (--group_left == 0 || split_done) {
          // End of a scale group (or of this split): scale its partial sums into the output.
          const float scale_lo = scale_to_float<T>(scale_now & 0xffffu);
          const float scale_hi = scale_to_float<T>(scale_now >> 16);
#pragma unroll
          for (int tt = 0; tt < kTokTiles; ++tt) {
            acc[tt][0] += scale_lo * group_acc[tt][0];
            acc[tt][1] += scale_lo * group_acc[tt][1];
            acc[tt][2] += scale_hi * group_acc[tt][2];
            acc[tt][3] += scale_hi * group_acc[tt][3];
#pragma unroll
            for (int i = 0; i < 4; ++i) group_acc[tt][i] = 0.f;
          }
          if (!split_done) {
            ++group;
            group_left = args.group_steps;
            scale_now = scale_next;
            zero_now = zero_next;
            zero_lo = low_pair(zero_now);
            zero_hi = high_pair(zero_now);
            if (group + 1 < args.groups) {
              scale_next = scale_pairs[(group + 1) * 8];
              if (zero_pairs) zero_next = zero_pairs[(group + 1) * 8];
            }
          }
        }
      }
    }
  }
  cp_async_wait<0>();

  // ---- epilogue ----
  const int row0 = tile * 16 + g;
  auto* y = static_cast<uint16_t*>(args.y);
  if (args.splits == 1) {
    if (!active) return;
#pragma unroll
    for (int tt = 0; tt < kTokTiles; ++tt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int token = token_base + tt * 8 + 2 * t + (i & 1);
        const int row = row0 + 8 * (i >> 1);
        if (token < args.m) y[static_cast<int64_t>(token) * args.n + row] = float_to_output<T>(acc[tt][i]);
      }
    }
    return;
  }

  // Split-K: publish this split's partial sums; the last CTA of the tile adds them in split order.
  if (active) {
#pragma unroll
    for (int tt = 0; tt < kTokTiles; ++tt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int token = token_base + tt * 8 + 2 * t + (i & 1);
        const int row = row0 + 8 * (i >> 1);
        if (token < args.m) {
          args.partials[(static_cast<int64_t>(split) * args.m + token) * args.n + row] = acc[tt][i];
        }
      }
    }
  }
  __threadfence();
  __syncthreads();
  __shared__ bool is_last;
  const int counter = blockIdx.z * gridDim.x + blockIdx.x;
  if (threadIdx.x == 0) {
    is_last = atomicAdd(&args.counters[counter], 1u) == static_cast<unsigned int>(args.splits - 1);
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  const int rows = min(kSkinnyRowsPerCta, args.n - static_cast<int>(blockIdx.x) * kSkinnyRowsPerCta);
  const int tokens = min(kTokens, args.m - token_base);
  for (int i = threadIdx.x; i < tokens * rows; i += kThreads) {
    const int token = token_base + i / rows, row = blockIdx.x * kSkinnyRowsPerCta + i % rows;
    float sum = 0.f;
    for (int sp = 0; sp < args.splits; ++sp) {
      sum += __ldcg(&args.partials[(static_cast<int64_t>(sp) * args.m + token) * args.n + row]);
    }
    y[static_cast<int64_t>(token) * args.n + row] = float_to_output<T>(sum);
  }
  if (threadIdx.x == 0) args.counters[counter] = 0;  // ready for the next launch
}

template <typename T>
void launch_typed(const W4A16KernelArgs& args, int tok_tiles, cudaStream_t stream) {
  const dim3 grid((args.n + kSkinnyRowsPerCta - 1) / kSkinnyRowsPerCta, args.splits,
                  (args.m + 8 * tok_tiles - 1) / (8 * tok_tiles));
  switch (tok_tiles) {
    case 1: w4a16_skinny_kernel<T, 1><<<grid, kThreads, 0, stream>>>(args); break;
    case 2: w4a16_skinny_kernel<T, 2><<<grid, kThreads, 0, stream>>>(args); break;
    default: w4a16_skinny_kernel<T, 4><<<grid, kThreads, 0, stream>>>(args); break;
  }
}

}  // namespace

void launch_w4a16_skinny(const W4A16KernelArgs& args, bool bf16, int tok_tiles, cudaStream_t stream) {
  if (bf16) {
    launch_typed<Bf16>(args, tok_tiles, stream);
  } else {
    launch_typed<F16>(args, tok_tiles, stream);
  }
}

}  // namespace qllm::kernels
