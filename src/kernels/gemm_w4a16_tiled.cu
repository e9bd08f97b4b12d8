// W4A16 GEMM, tiled path: Y[M, N] = X[M, K] @ W'[N, K]^T for mid-sized M (17 to a few hundred tokens), on
// mma.sync (sm_80+), in the spirit of Marlin.
//
// Past 16 tokens the skinny kernel's design (each CTA copies its whole activation slice to shared memory
// once, every warp owns 16 weight rows) runs out of shared memory and of reuse: every activation fragment
// it loads feeds one MMA. Here a CTA owns a 128-row x kTokens tile of Y and walks K in 64-wide steps through a
// kStages-deep cp.async ring that holds, per step, the CTA's weight units (4 KB of INT4), their scales (and
// zero points) and the [kTokens x 64] activation block. Each warp covers 32 rows x kTokens / 2 tokens, so
// one dequantized A fragment feeds kTokens / 16 MMAs and one activation fragment feeds two.
//  - weights stay in the repacked unit order (docs/FORMATS.md): a lane's 16 bytes are its A fragments for
//    the step's four k16 MMAs, copied to shared memory verbatim and read back with one 16-byte load;
//  - dequantization: lop3 + packed subtract give exact (q - z), one packed multiply applies the scale, so the
//    tensor cores see the same bf16/f16 weights as the dequant path's cuBLAS (W4A16Precision::RoundedWeights);
//  - scales and zero points ride in the same ring, one 4-byte pair per (row tile, k16 step, row pair), so
//    any group size that is a multiple of 16 costs the same;
//  - small grids split K across CTAs; the last CTA of a tile adds the partial sums in split order
//    (deterministic) and writes Y (w4a16::splitk_finish).
#include <algorithm>

#include "kernels/cuda_utils.h"
#include "kernels/gemm_w4a16_device.cuh"
#include "kernels/gemm_w4a16_launch.h"

namespace qllm::kernels {

namespace {

using namespace w4a16;

constexpr int kThreads = 256;
constexpr int kRowWarps = 4;                   // warps along the weight rows ...
constexpr int kTokenWarps = 2;                 // ... times warps along the tokens = 8 warps
constexpr int kWarpRowTiles = 2;               // 16-row tiles per warp: each activation fragment feeds two MMAs
constexpr int kCtaRowTiles = kRowWarps * kWarpRowTiles;  // 8 tiles = 128 rows
constexpr int kStepK = 64;
constexpr int kStages = 4;  // steps in flight: 3 loading while one is computed (enough to cover DRAM latency)
constexpr int kXRowElems = kStepK + 8;  // 8 elements of padding: the 8 rows of an ldmatrix hit distinct banks
constexpr int kWeightBytes = kCtaRowTiles * 512;
constexpr int kPairBytes = kCtaRowTiles * 4 * 8 * 4;  // (tile, k16 step, row pair g) -> one 32-bit pair

template <int kTokens>
constexpr int stage_bytes() {
  return kWeightBytes + 2 * kPairBytes + kTokens * kXRowElems * 2;
}

// 4-byte global -> shared copy (.ca: the only cache mode cp.async allows below 16 bytes); zero-fills when
// `valid` is false.
__device__ __forceinline__ void cp_async_4(void* smem, const void* global, bool valid) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(addr), "l"(global), "r"(valid ? 4 : 0));
}

// Register caps: two CTAs per SM at 128 tokens (64 accumulators per thread), three below.
template <typename T, int kTokens>
__global__ void __launch_bounds__(kThreads, kTokens == 128 ? 2 : 3) w4a16_tiled_kernel(const W4A16KernelArgs args) {
  constexpr int kTokTiles = kTokens / kTokenWarps / 8;  // 8-token MMA tiles per warp
  static_assert(kTokTiles % 2 == 0, "one ldmatrix.x4 loads two token tiles");
  extern __shared__ __align__(16) uint8_t smem[];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int row_warp = warp % kRowWarps, token_warp = warp / kRowWarps;
  const int token_base = blockIdx.x * kTokens;
  const int first_tile = blockIdx.y * kCtaRowTiles;
  const int split = blockIdx.z;
  const int row_tiles = args.n / 16;
  const int k_steps = args.k / kStepK;
  const int step_begin = split * args.steps_per_split;
  const int steps = max(min(step_begin + args.steps_per_split, k_steps) - step_begin, 0);

  // ---- one ring slot per step: [weights | scale pairs | zero pairs | activations] ----
  auto slot = [&](int s) { return smem + (s % kStages) * stage_bytes<kTokens>(); };
  const auto* units = static_cast<const uint4*>(args.qweight);
  const auto* x = static_cast<const uint16_t*>(args.x);
  // What each thread copies, fixed for the whole loop: one 16-byte weight chunk (tile = thread / 32), one
  // scale pair and one zero pair (tile, k16 step kk, row pair gg), kTokens / 32 activation chunks.
  const int copy_tile = threadIdx.x / 32, copy_kk = threadIdx.x / 8 % 4, copy_g = threadIdx.x % 8;
  const bool copy_tile_valid = first_tile + copy_tile < row_tiles;
  const int64_t unit_row = static_cast<int64_t>(first_tile + copy_tile) * k_steps;
  const int64_t pair_row = static_cast<int64_t>(first_tile + copy_tile) * args.groups;
  auto load_step = [&](int s) {
    uint8_t* dst = slot(s);
    const int step = step_begin + s;
    cp_async_16(dst + threadIdx.x * 16, copy_tile_valid ? units + (unit_row + step) * 32 + lane : units,
                copy_tile_valid);
    const int64_t pair = (pair_row + (step * 4 + copy_kk) / args.group_steps) * 8 + copy_g;
    cp_async_4(dst + kWeightBytes + threadIdx.x * 4, copy_tile_valid ? args.scales + pair : args.scales,
               copy_tile_valid);
    if (args.zero_offsets) {
      cp_async_4(dst + kWeightBytes + kPairBytes + threadIdx.x * 4,
                 copy_tile_valid ? args.zero_offsets + pair : args.zero_offsets, copy_tile_valid);
    }
    auto* x_dst = reinterpret_cast<uint16_t*>(dst + kWeightBytes + 2 * kPairBytes);
#pragma unroll
    for (int c = threadIdx.x; c < kTokens * 8; c += kThreads) {
      const int row = c / 8, col = c % 8 * 8;
      const int token = token_base + row;
      const bool valid = token < args.m;  // rows past M are zero-filled
      cp_async_16(x_dst + row * kXRowElems + col,
                  valid ? x + static_cast<int64_t>(token) * args.k + step * kStepK + col : x, valid);
    }
  };

  // ---- prologue: kStages - 1 steps in flight (a commit per slot, empty or not, keeps the count uniform) ----
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < steps) load_step(s);
    cp_async_commit();
  }

  float acc[kWarpRowTiles][kTokTiles][4] = {};  // rows (g, g+8) x tokens (2t, 2t+1) per (row tile, token tile)
  constexpr uint32_t kSymmetricZero = (T::kMagic + 8) | ((T::kMagic + 8) << 16);
  const int my_tile0 = row_warp * kWarpRowTiles;  // the warp's first tile within the CTA
  // ldmatrix.x4 source row of this lane: matrices (tokens 0-7 | 8-15) x (k 0-7 | 8-15) of a token-tile pair.
  const int x_lane_offset = (token_warp * kTokTiles * 8 + (lane & 7) + 8 * (lane >> 4)) * kXRowElems +
                            8 * ((lane >> 3) & 1);

  for (int s = 0; s < steps; ++s) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // step s is in; everyone is done with step s - 1, whose slot the next load reuses
    if (s + kStages - 1 < steps) load_step(s + kStages - 1);
    cp_async_commit();

    const uint8_t* cur = slot(s);
    uint4 w[kWarpRowTiles];
#pragma unroll
    for (int rt = 0; rt < kWarpRowTiles; ++rt)
      w[rt] = reinterpret_cast<const uint4*>(cur)[(my_tile0 + rt) * 32 + lane];
    const auto* scale_pairs = reinterpret_cast<const uint32_t*>(cur + kWeightBytes);
    const auto* zero_pairs = reinterpret_cast<const uint32_t*>(cur + kWeightBytes + kPairBytes);
    const auto* x_cur = reinterpret_cast<const uint16_t*>(cur + kWeightBytes + 2 * kPairBytes) + x_lane_offset;

#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      // A: both row tiles' weights of this k16 step, dequantized and scaled.
      uint32_t a[kWarpRowTiles][4];
#pragma unroll
      for (int rt = 0; rt < kWarpRowTiles; ++rt) {
        const int pair = ((my_tile0 + rt) * 4 + kk) * 8 + g;
        const uint32_t zero = args.zero_offsets ? zero_pairs[pair] : kSymmetricZero;
        const uint32_t scale = scale_pairs[pair];
        const uint32_t words[4] = {w[rt].x, w[rt].y, w[rt].z, w[rt].w};
        dequant_step<T>(words[kk], low_pair(zero), high_pair(zero), a[rt]);
        const uint32_t scale_lo = low_pair(scale), scale_hi = high_pair(scale);
        a[rt][0] = mul2<T>(a[rt][0], scale_lo);  // row g
        a[rt][1] = mul2<T>(a[rt][1], scale_hi);  // row g + 8
        a[rt][2] = mul2<T>(a[rt][2], scale_lo);
        a[rt][3] = mul2<T>(a[rt][3], scale_hi);
      }
      // B: two token tiles per ldmatrix.x4, each fragment used by both row tiles.
#pragma unroll
      for (int tp = 0; tp < kTokTiles / 2; ++tp) {
        uint32_t b[4];
        ldmatrix_x4(b, x_cur + tp * 16 * kXRowElems + kk * 16);
#pragma unroll
        for (int rt = 0; rt < kWarpRowTiles; ++rt) {
          mma_16816<T>(acc[rt][2 * tp], a[rt], b[0], b[1]);
          mma_16816<T>(acc[rt][2 * tp + 1], a[rt], b[2], b[3]);
        }
      }
    }
  }

  // ---- epilogue: Y directly, or this split's partial sums and the split-K finish ----
  auto* y = static_cast<uint16_t*>(args.y);
#pragma unroll
  for (int rt = 0; rt < kWarpRowTiles; ++rt) {
    const int tile = first_tile + my_tile0 + rt;
    if (tile >= row_tiles) continue;
#pragma unroll
    for (int tt = 0; tt < kTokTiles; ++tt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int token = token_base + (token_warp * kTokTiles + tt) * 8 + 2 * t + (i & 1);
        const int row = tile * 16 + g + 8 * (i >> 1);
        if (token >= args.m) continue;
        if (args.splits == 1) {
          y[static_cast<int64_t>(token) * args.n + row] = float_to_output<T>(acc[rt][tt][i]);
        } else {
          args.partials[(static_cast<int64_t>(split) * args.m + token) * args.n + row] = acc[rt][tt][i];
        }
      }
    }
  }
  if (args.splits > 1) {
    const int first_row = first_tile * 16;
    splitk_finish<T>(args, blockIdx.y * gridDim.x + blockIdx.x, first_row,
                     min(kCtaRowTiles * 16, args.n - first_row), token_base, min(kTokens, args.m - token_base));
  }
}

template <typename T, int kTokens>
void launch_config(const W4A16KernelArgs& args, cudaStream_t stream) {
  constexpr int kSmem = kStages * stage_bytes<kTokens>();
  static const bool configured = [] {  // once per instantiation, thread-safe
    allow_all_dynamic_shared_memory(reinterpret_cast<const void*>(w4a16_tiled_kernel<T, kTokens>));
    return true;
  }();
  (void)configured;
  // Token blocks fastest: the CTAs that share a weight tile run together and read it from DRAM once.
  const dim3 grid(static_cast<unsigned>(ceil_div(args.m, kTokens)),
                  static_cast<unsigned>(ceil_div(args.n, kCtaRowTiles * 16)), static_cast<unsigned>(args.splits));
  w4a16_tiled_kernel<T, kTokens><<<grid, kThreads, kSmem, stream>>>(args);
}

template <typename T>
void launch_typed(const W4A16KernelArgs& args, int tokens_per_cta, cudaStream_t stream) {
  switch (tokens_per_cta) {
    case 32:
      launch_config<T, 32>(args, stream);
      break;
    case 64:
      launch_config<T, 64>(args, stream);
      break;
    default:
      launch_config<T, 128>(args, stream);
      break;
  }
}

}  // namespace

void launch_w4a16_tiled(const W4A16KernelArgs& args, bool bf16, int tokens_per_cta, cudaStream_t stream) {
  if (bf16) {
    launch_typed<Bf16>(args, tokens_per_cta, stream);
  } else {
    launch_typed<F16>(args, tokens_per_cta, stream);
  }
}

}  // namespace qllm::kernels
