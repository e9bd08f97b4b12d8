// W4A16 GEMM, tiled path: Y[M, N] = X[M, K] @ W'[N, K]^T for mid-sized M (17 to a few hundred tokens), on
// mma.sync (sm_80+), in the spirit of Marlin.
//
// Past 16 tokens the skinny kernel's design (each CTA copies its whole activation slice to shared memory
// once, every warp owns 16 weight rows) runs out of shared memory and of reuse: every activation fragment
// it loads feeds one MMA. Here a CTA owns a 128-row x kTokens tile of Y and walks K in 64-wide steps through
// a kStages-deep cp.async ring that holds, per step, the CTA's weight units (4 KB of INT4), their scales (and
// zero points) and the [kTokens x 64] activation block; WarpLayout says how its 8 warps share the tile.
//  - weights stay in the repacked unit order (docs/FORMATS.md): a lane's 16 bytes are its A fragments for
//    the step's four k16 MMAs, copied to shared memory verbatim and read back with one 16-byte load;
//  - dequantization: lop3 + packed subtract give exact (q - z), one packed multiply applies the scale, so the
//    tensor cores see the same bf16/f16 weights as the dequant path's cuBLAS
//    (W4A16Precision::RoundedWeights);
//  - scales and zero points ride in the same ring, one 4-byte pair per (row tile, k16 step, row pair), so
//    any group size that is a multiple of 16 costs the same;
//  - min offset (GGUF Q4_1, w' = u * s + m): the minimums ride in the zero points' slot, z = 0, and a packed
//    fma applies scale and minimum in one rounding of the exact u * s + m (the reference rounds ggml's f32
//    value instead: the two differ only where u * s + m needs more than f32's 24 bits, i.e. m and u * s many
//    binades apart);
//  - small grids split K across CTAs. On sm_90 the splits of a tile form a thread-block cluster and add
//    their accumulators through distributed shared memory, each CTA summing a share of the tile in split
//    order (deterministic, no global round trip: the last-CTA finish of the skinny kernel would leave one SM
//    summing a 128 x 128 tile of every split); elsewhere they write fp32 partials for launch_splitk_reduce.
#include <cooperative_groups.h>

#include <algorithm>

#include "kernels/gemm/w4a16_device.cuh"
#include "kernels/gemm/w4a16_launch.h"
#include "kernels/runtime/cuda_utils.h"

namespace qllm::kernels {

namespace {

using namespace w4a16;

constexpr int kThreads = 256;
constexpr int kCtaRowTiles = 8;  // 16-row weight tiles per CTA: 128 rows
constexpr int kStepK = 64;
constexpr int kXRowElems = kStepK + 8;  // 8 elements of padding: the 8 rows of an ldmatrix hit distinct banks
constexpr int kWeightBytes = kCtaRowTiles * 512;
constexpr int kPairBytes = kCtaRowTiles * 8 * 4 * 4;  // [tile][row pair g][k16 step]: one 32-bit pair each

// How the 8 warps share a CTA's 128 rows x kTokens tile. Up to 64 tokens all warps lie along the rows, one
// 16-row tile each, so every weight is dequantized once (measured: with two warps along the tokens, each
// dequantizing the same weights, 32-token CTAs spent 17 instructions per MMA). At 128 tokens, 4 x 2 warps of
// two row tiles: each activation fragment then feeds two MMAs, halving the ldmatrix traffic per MMA (8 x 1
// measured the same on H200: at this size the MMA pipe itself is the limit, see docs/RESULTS.md).
template <int kTokens>
struct WarpLayout {
  static constexpr int kTokenWarps = kTokens == 128 ? 2 : 1;
  static constexpr int kRowWarps = 8 / kTokenWarps;
  static constexpr int kWarpRowTiles = kCtaRowTiles / kRowWarps;  // 16-row tiles per warp
  static constexpr int kTokTiles = kTokens / kTokenWarps / 8;     // 8-token MMA tiles per warp
};

template <int kTokens>
constexpr int stage_bytes() {
  return kWeightBytes + 2 * kPairBytes + kTokens * kXRowElems * 2;
}
// Ring depth: steps in flight are what hides DRAM latency when few CTAs share an SM; 32-token stages are
// small enough for 6 (three CTAs per SM still fit), larger ones keep 4 (3 loading while one is computed).
template <int kTokens>
constexpr int kStages = kTokens == 32 ? 6 : 4;

// 4-byte global -> shared copy (.ca: the only cache mode cp.async allows below 16 bytes); zero-fills when
// `valid` is false.
__device__ __forceinline__ void cp_async_4(void* smem, const void* global, bool valid) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(addr), "l"(global), "r"(valid ? 4 : 0));
}

// Register caps: two CTAs per SM at 128 tokens (64 accumulators per thread), three below. kMinOffset (GGUF
// Q4_1): its own instantiation, so that the other weights' code and registers stay as they were.
template <typename T, int kTokens, bool kMinOffset>
__global__ void __launch_bounds__(kThreads, kTokens == 128 ? 2 : 3)
    w4a16_tiled_kernel(const W4A16KernelArgs args) {
  using Layout = WarpLayout<kTokens>;
  constexpr int kRowWarps = Layout::kRowWarps, kWarpRowTiles = Layout::kWarpRowTiles;
  constexpr int kTokTiles = Layout::kTokTiles;
  static_assert(kTokTiles % 2 == 0, "one ldmatrix.x4 loads two token tiles");
  constexpr int kXChunks = kTokens * 8 / kThreads;  // 16-byte activation chunks per thread per step
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
  const bool has_zero = args.zero_offsets != nullptr;  // zero points, or minimums (kMinOffset)

  // ---- what this thread copies into each ring slot [weights | scale pairs | zero pairs | activations],
  // set up once so that a step's copies cost a few instructions: one 16-byte weight chunk (tile =
  // thread / 32), one scale pair and one zero pair (tile, row pair pg, k16 step pk: stored [tile][pg][pk] so
  // that a lane reads its four k16 steps' pairs with one 16-byte load), kXChunks activation chunks ----
  const int copy_tile = threadIdx.x / 32, pg = threadIdx.x / 4 % 8, pk = threadIdx.x % 4;
  const bool tile_valid = first_tile + copy_tile < row_tiles;
  const auto* w_src = static_cast<const uint4*>(args.qweight);
  if (tile_valid) w_src += (static_cast<int64_t>(first_tile + copy_tile) * k_steps + step_begin) * 32 + lane;
  const int64_t pair_row =
      tile_valid ? static_cast<int64_t>(first_tile + copy_tile) * args.groups * 8 + pg : 0;
  int group = (step_begin * 4 + pk) / args.group_steps;  // of this thread's k16 step in the next load
  int in_group = (step_begin * 4 + pk) - group * args.group_steps;  // k16 steps into that group
  const auto* x = static_cast<const uint16_t*>(args.x);
  const int x_row = threadIdx.x / 8, x_col = threadIdx.x % 8 * 8;  // chunk c at row x_row + 32 c
  int x_k = step_begin * kStepK + x_col;  // the chunks' column in X: past x_cols they are zero-filled
  const uint16_t* x_src = x + static_cast<int64_t>(token_base + x_row) * args.x_cols + x_k;
  const int64_t x_chunk_stride = 32 * static_cast<int64_t>(args.x_cols);
  unsigned x_valid = 0;  // bit c: chunk c's token exists (rows past M are zero-filled)
#pragma unroll
  for (int c = 0; c < kXChunks; ++c) x_valid |= (token_base + x_row + 32 * c < args.m ? 1u : 0u) << c;

  constexpr int kRing = kStages<kTokens>;
  auto slot = [&](int s) { return smem + (s % kRing) * stage_bytes<kTokens>(); };
  auto load_next_step = [&](int s) {  // steps are loaded in order: s = 0, 1, 2, ...
    uint8_t* dst = slot(s);
    cp_async_16(dst + threadIdx.x * 16, w_src, tile_valid);
    w_src += tile_valid ? 32 : 0;
    const int64_t pair = pair_row + static_cast<int64_t>(group) * 8;
    cp_async_4(dst + kWeightBytes + threadIdx.x * 4, args.scales + pair, tile_valid);
    if (has_zero)
      cp_async_4(dst + kWeightBytes + kPairBytes + threadIdx.x * 4, args.zero_offsets + pair, tile_valid);
    for (in_group += 4; in_group >= args.group_steps; in_group -= args.group_steps) ++group;
    uint8_t* x_dst = dst + kWeightBytes + 2 * kPairBytes + (x_row * kXRowElems + x_col) * 2;
    const bool x_in_row = x_k < args.x_cols;  // x_cols % 8 == 0: a chunk is all in or all out
#pragma unroll
    for (int c = 0; c < kXChunks; ++c) {
      const bool valid = (x_valid >> c & 1u) && x_in_row;
      cp_async_16(x_dst + c * 32 * kXRowElems * 2, valid ? x_src + c * x_chunk_stride : x, valid);
    }
    x_src += kStepK;
    x_k += kStepK;
  };

  // ---- prologue: kRing - 1 steps in flight (a commit per slot, empty or not, keeps the count uniform) ----
#pragma unroll
  for (int s = 0; s < kRing - 1; ++s) {
    if (s < steps) load_next_step(s);
    cp_async_commit();
  }

  float acc[kWarpRowTiles][kTokTiles][4] =
      {};  // rows (g, g+8) x tokens (2t, 2t+1) per (row tile, token tile)
  constexpr uint32_t kSymmetricZero = (T::kNibbleMagic + 8) | ((T::kNibbleMagic + 8) << 16);
  constexpr uint32_t kNoZero = T::kNibbleMagic | (T::kNibbleMagic << 16);  // min offset: z = 0
  const int my_tile0 = row_warp * kWarpRowTiles;  // the warp's first tile within the CTA
  // ldmatrix.x4 source row of this lane: matrices (tokens 0-7 | 8-15) x (k 0-7 | 8-15) of a token-tile pair.
  const int x_lane_offset =
      (token_warp * kTokTiles * 8 + (lane & 7) + 8 * (lane >> 4)) * kXRowElems + 8 * ((lane >> 3) & 1);

  for (int s = 0; s < steps; ++s) {
    cp_async_wait<kRing - 2>();
    __syncthreads();  // step s is in; everyone is done with step s - 1, whose slot the next load reuses
    if (s + kRing - 1 < steps) load_next_step(s + kRing - 1);
    cp_async_commit();

    const uint8_t* cur = slot(s);
    uint32_t w[kWarpRowTiles][4], scales[kWarpRowTiles][4], zeros[kWarpRowTiles][4];
#pragma unroll
    for (int rt = 0; rt < kWarpRowTiles; ++rt) {
      const int tile = my_tile0 + rt;
      const uint4 wv = reinterpret_cast<const uint4*>(cur)[tile * 32 + lane];
      const uint4 sv = reinterpret_cast<const uint4*>(cur + kWeightBytes)[tile * 8 + g];
      const uint4 zv = has_zero
                           ? reinterpret_cast<const uint4*>(cur + kWeightBytes + kPairBytes)[tile * 8 + g]
                           : make_uint4(kSymmetricZero, kSymmetricZero, kSymmetricZero, kSymmetricZero);
      w[rt][0] = wv.x, w[rt][1] = wv.y, w[rt][2] = wv.z, w[rt][3] = wv.w;
      scales[rt][0] = sv.x, scales[rt][1] = sv.y, scales[rt][2] = sv.z, scales[rt][3] = sv.w;
      zeros[rt][0] = zv.x, zeros[rt][1] = zv.y, zeros[rt][2] = zv.z, zeros[rt][3] = zv.w;
    }
    const auto* x_cur =
        reinterpret_cast<const uint16_t*>(cur + kWeightBytes + 2 * kPairBytes) + x_lane_offset;

#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      // A: both row tiles' weights of this k16 step, dequantized and scaled.
      uint32_t a[kWarpRowTiles][4];
#pragma unroll
      for (int rt = 0; rt < kWarpRowTiles; ++rt) {
        const uint32_t scale_lo = low_pair(scales[rt][kk]), scale_hi = high_pair(scales[rt][kk]);
        if constexpr (kMinOffset) {
          dequant_step<T>(w[rt][kk], kNoZero, kNoZero, a[rt]);
          const uint32_t min_lo = low_pair(zeros[rt][kk]), min_hi = high_pair(zeros[rt][kk]);
          a[rt][0] = fma2<T>(a[rt][0], scale_lo, min_lo);  // row g
          a[rt][1] = fma2<T>(a[rt][1], scale_hi, min_hi);  // row g + 8
          a[rt][2] = fma2<T>(a[rt][2], scale_lo, min_lo);
          a[rt][3] = fma2<T>(a[rt][3], scale_hi, min_hi);
        } else {
          dequant_step<T>(w[rt][kk], low_pair(zeros[rt][kk]), high_pair(zeros[rt][kk]), a[rt]);
          a[rt][0] = mul2<T>(a[rt][0], scale_lo);  // row g
          a[rt][1] = mul2<T>(a[rt][1], scale_hi);  // row g + 8
          a[rt][2] = mul2<T>(a[rt][2], scale_lo);
          a[rt][3] = mul2<T>(a[rt][3], scale_hi);
        }
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

  // Where accumulator (rt, tt, i) lands in Y; false when outside it (padding rows included).
  auto output_of = [&](int rt, int tt, int i, int& token, int& row) {
    const int tile = first_tile + my_tile0 + rt;
    token = token_base + (token_warp * kTokTiles + tt) * 8 + 2 * t + (i & 1);
    row = tile * 16 + g + 8 * (i >> 1);
    return row < args.n_out && token < args.m;
  };
  auto* y = static_cast<uint16_t*>(args.y);
  // Calls f(v, rt, tt, i) for every accumulator value; v = its flat index (constants after unrolling).
  auto for_each_accumulator = [&](auto&& f) {
#pragma unroll
    for (int rt = 0; rt < kWarpRowTiles; ++rt) {
#pragma unroll
      for (int tt = 0; tt < kTokTiles; ++tt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) f((rt * kTokTiles + tt) * 4 + i, rt, tt, i);
      }
    }
  };

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // ---- split-K inside a thread-block cluster (sm_90): the splits' accumulators meet in shared memory;
  // CTA r sums every splits-th value over the cluster's CTAs in split order (deterministic), writes Y ----
  if (args.cluster_splits > 1) {
    namespace cg = cooperative_groups;
    const cg::cluster_group cluster = cg::this_cluster();
    cp_async_wait<0>();
    __syncthreads();  // the ring is idle: it becomes this CTA's stash
    constexpr int kValues = kWarpRowTiles * kTokTiles * 4;
    static_assert(kValues * kThreads * 4 <= kRing * stage_bytes<kTokens>(), "the stash fits in the ring");
    float* stash = reinterpret_cast<float*>(smem);  // [kValues][kThreads]: conflict-free
    for_each_accumulator(
        [&](int v, int rt, int tt, int i) { stash[v * kThreads + threadIdx.x] = acc[rt][tt][i]; });
    cluster.sync();  // every split's stash is written
    const int rank = static_cast<int>(cluster.block_rank());
    for_each_accumulator([&](int v, int rt, int tt, int i) {
      int token, row;
      if (v % args.cluster_splits != rank || !output_of(rt, tt, i, token, row)) return;
      float sum = 0.f;
      for (int c = 0; c < args.cluster_splits; ++c)
        sum += cluster.map_shared_rank(stash, c)[v * kThreads + threadIdx.x];
      y[static_cast<int64_t>(token) * args.n_out + row] = from_float<T>(sum);
    });
    cluster.sync();  // keep this CTA's stash alive until the others have read it
    return;
  }
#endif

  // ---- epilogue: Y directly, or this split's partial sums (summed by launch_splitk_reduce) ----
  for_each_accumulator([&](int, int rt, int tt, int i) {
    int token, row;
    if (!output_of(rt, tt, i, token, row)) return;
    if (args.splits == 1) {
      y[static_cast<int64_t>(token) * args.n_out + row] = from_float<T>(acc[rt][tt][i]);
    } else {
      args.partials[(static_cast<int64_t>(split) * args.m + token) * args.n + row] = acc[rt][tt][i];
    }
  });
}

template <typename T, int kTokens, bool kMinOffset>
void launch_config(const W4A16KernelArgs& args, cudaStream_t stream) {
  constexpr int kSmem = kStages<kTokens> * stage_bytes<kTokens>();
  static const bool configured = [] {  // once per instantiation, thread-safe
    allow_all_dynamic_shared_memory(
        reinterpret_cast<const void*>(w4a16_tiled_kernel<T, kTokens, kMinOffset>));
    return true;
  }();
  (void)configured;
  if (args.configure_only) return;
  // Token blocks fastest: the CTAs that share a weight tile run together and read it from DRAM once.
  const dim3 grid(static_cast<unsigned>(ceil_div(args.m, kTokens)),
                  static_cast<unsigned>(ceil_div(args.n, kCtaRowTiles * 16)),
                  static_cast<unsigned>(args.splits));
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = kSmem;
  config.stream = stream;
  cudaLaunchAttribute cluster{};
  if (args.cluster_splits > 1) {  // the splits of one tile form a cluster
    cluster.id = cudaLaunchAttributeClusterDimension;
    cluster.val.clusterDim.x = 1;
    cluster.val.clusterDim.y = 1;
    cluster.val.clusterDim.z = static_cast<unsigned>(args.cluster_splits);
    config.attrs = &cluster;
    config.numAttrs = 1;
  }
  QLLM_CUDA_CHECK(cudaLaunchKernelEx(&config, w4a16_tiled_kernel<T, kTokens, kMinOffset>, args));
}

template <typename T, bool kMinOffset>
void launch_tokens(const W4A16KernelArgs& args, int tokens_per_cta, cudaStream_t stream) {
  switch (tokens_per_cta) {
    case 32:
      launch_config<T, 32, kMinOffset>(args, stream);
      break;
    case 64:
      launch_config<T, 64, kMinOffset>(args, stream);
      break;
    default:
      launch_config<T, 128, kMinOffset>(args, stream);
      break;
  }
}

template <typename T>
void launch_typed(const W4A16KernelArgs& args, int tokens_per_cta, cudaStream_t stream) {
  if (args.min_offset) {
    launch_tokens<T, true>(args, tokens_per_cta, stream);
  } else {
    launch_tokens<T, false>(args, tokens_per_cta, stream);
  }
}

}  // namespace

bool w4a16_tiled_cluster_reduction_available() {
  // The cluster path exists in the kernel's sm_90+ binary only: ask which binary this GPU runs, not just
  // whether the GPU could launch clusters.
  static PerDeviceFlag available;
  return available.get([](int device) {
    int clusters = 0;
    cudaFuncAttributes attributes{};
    return cudaDeviceGetAttribute(&clusters, cudaDevAttrClusterLaunch, device) == cudaSuccess &&
           clusters != 0 &&
           cudaFuncGetAttributes(&attributes, reinterpret_cast<const void*>(
                                                  w4a16_tiled_kernel<Bf16, 32, false>)) == cudaSuccess &&
           attributes.binaryVersion >= 90;
  });
}

template <typename T>
void launch_w4a16_tiled(const W4A16KernelArgs& args, int tokens_per_cta, cudaStream_t stream) {
  launch_typed<T>(args, tokens_per_cta, stream);
}
template void launch_w4a16_tiled<Bf16>(const W4A16KernelArgs& args, int tokens_per_cta, cudaStream_t stream);
template void launch_w4a16_tiled<F16>(const W4A16KernelArgs& args, int tokens_per_cta, cudaStream_t stream);

}  // namespace qllm::kernels
