// LLM.int8() GEMM, skinny path: Y[M, N] for small M (decode) on mma.sync m16n8k32 s8 -> s32 (sm_80+).
//
// Memory-bound like the W4A16 skinny kernel (same CTA shape: 8 warps of 16 weight rows, K split across warps
// and, if needed, CTAs; the CTA's int8 activation slice in shared memory), but simpler inside: no dequant.
// The trick that makes plain row-major int8 weights usable without a repack: inside each 64-wide k block, the
// MMA's k index is a permutation of the physical one, the same for both operands (a dot product does not care
// about order). Thread (g, t) takes the 16 bytes k0 + 16t .. 16t + 15 of rows g and g + 8 -- one coalesced
// 16-byte load each -- and uses bytes 8j .. 8j + 7 of them for k32 step j: bytes 0-3 as the fragment's
// k = 4t..4t+3 and bytes 4-7 as k = 16+4t..16+4t+3. The activations' fragments come from the same physical
// bytes of the token's row (one 16-byte shared-memory load per token tile).
#include <algorithm>

#include "kernels/common/dependent_launch.cuh"
#include "kernels/gemm/int8_device.cuh"
#include "kernels/gemm/int8_launch.h"
#include "kernels/gemm/w4a16_device.cuh"
#include "kernels/runtime/cuda_utils.h"
#include "quant/int8_math.h"

namespace qllm::kernels {

namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kStepK = 64;
constexpr int kPrefetch = 3;  // 64-wide steps in flight per warp (two 16-byte loads each)
// Bytes of padding per activation row: two rows of a quarter-warp hit different banks.
constexpr int kRowPad = 64;

__device__ __forceinline__ void mma_s8(int32_t (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                       uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// A weight load: 16 bytes of one row, streamed (evict-first), with the L2 told to fetch the whole 128-byte
// line. A warp's load covers 64 bytes of each of 8 rows, and the row's next 64 bytes are the warp's next
// step; without the hint the L2 fetches the 64 bytes asked for (lm_head at M = 16: 85 -> 80 us, H200).
__device__ __forceinline__ uint4 load_weight_chunk(const uint4* p) {
  uint4 r;
  asm("ld.global.cs.L2::128B.v4.u32 {%0,%1,%2,%3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

template <bool kBf16>
__device__ __forceinline__ uint16_t to_output(float v) {
  if constexpr (kBf16) return __bfloat16_as_ushort(__float2bfloat16_rn(v));
  return __half_as_ushort(__float2half_rn(v));
}

template <bool kBf16>
__device__ __forceinline__ float from_16bit(uint16_t bits) {
  if constexpr (kBf16) return __uint_as_float(static_cast<uint32_t>(bits) << 16);
  return __half2float(__ushort_as_half(bits));
}

template <bool kBf16, int kTokTiles, int kWarpsK>
__global__ void __launch_bounds__(kThreads, kTokTiles == 4 ? 2 : 3) int8_skinny_kernel(const Int8GemmArgs a) {
  constexpr int kTokens = 8 * kTokTiles;
  constexpr int kTilesPerCta = kWarps / kWarpsK;
  extern __shared__ __align__(16) uint8_t smem[];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int warp_tile = warp % kTilesPerCta, warp_k = warp / kTilesPerCta;
  const int tile = blockIdx.x * kTilesPerCta + warp_tile;
  const bool active = tile < a.n / 16;
  const int split = blockIdx.y;
  const int token_base = blockIdx.z * kTokens;
  const int k_steps = a.k / kStepK;
  const int cta_begin = split * a.steps_per_split;
  const int cta_end = min(cta_begin + a.steps_per_split, k_steps);
  const int cta_steps = max(cta_end - cta_begin, 0);
  const int per_warp = (cta_steps + kWarpsK - 1) / kWarpsK;
  const int warp_begin = min(cta_begin + warp_k * per_warp, cta_end);
  const int steps = min(per_warp, cta_end - warp_begin);

  // ---- weights: rows g and g + 8 of the tile, 16 bytes each per step ----
  const int row0 = tile * 16 + g;
  const uint4* w_lo =
      reinterpret_cast<const uint4*>(a.w + static_cast<int64_t>(row0) * a.k + warp_begin * kStepK) + t;
  const uint4* w_hi = w_lo + static_cast<int64_t>(8) * a.k / 16;
  uint4 ring_lo[kPrefetch], ring_hi[kPrefetch];
#pragma unroll
  for (int p = 0; p < kPrefetch; ++p) {
    if (active && p < steps) {
      ring_lo[p] = load_weight_chunk(w_lo + p * 4);
      ring_hi[p] = load_weight_chunk(w_hi + p * 4);
    }
  }

  // ---- the CTA's int8 activation slice [kTokens x cta_steps * 64] into shared memory, once ----
  const int row_bytes = a.steps_per_split * kStepK + kRowPad;
  // Launched as a dependent (dependent_launch.cuh): the weight loads above overlap the previous kernel (the
  // activation prep, or whatever wrote X); its results are read only from here on.
  wait_for_previous_kernel();
  int8::clear_outlier_bitmap(a);
  const int chunks_per_row = cta_steps * (kStepK / 16);
  for (int chunk = threadIdx.x; chunk < kTokens * chunks_per_row; chunk += kThreads) {
    const int row = chunk / chunks_per_row, col = (chunk % chunks_per_row) * 16;
    const int token = token_base + row;
    const bool valid = token < a.m;
    cp_async_16(smem + row * row_bytes + col,
                a.xq + (valid ? static_cast<int64_t>(token) * a.k + cta_begin * kStepK + col : 0), valid);
  }
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  int32_t acc[kTokTiles][4] = {};  // rows (g, g+8) x tokens (2t, 2t+1) per token tile
  const uint8_t* x_step = smem + g * row_bytes + (warp_begin - cta_begin) * kStepK + 16 * t;
  auto compute_step = [&](const uint4& lo, const uint4& hi) {
#pragma unroll
    for (int tt = 0; tt < kTokTiles; ++tt) {
      const uint4 x = *reinterpret_cast<const uint4*>(x_step + tt * 8 * row_bytes);
      mma_s8(acc[tt], lo.x, hi.x, lo.y, hi.y, x.x, x.y);  // k32 step 0: bytes 0-7 of the 16
      mma_s8(acc[tt], lo.z, hi.z, lo.w, hi.w, x.z, x.w);  // k32 step 1: bytes 8-15
    }
    x_step += kStepK;
  };
  if (active) {
    int s = 0;
    for (; s + kPrefetch <= steps; s += kPrefetch) {
#pragma unroll
      for (int p = 0; p < kPrefetch; ++p) {
        const uint4 lo = ring_lo[p], hi = ring_hi[p];
        if (s + p + kPrefetch < steps) {
          ring_lo[p] = load_weight_chunk(w_lo + (s + p + kPrefetch) * 4);
          ring_hi[p] = load_weight_chunk(w_hi + (s + p + kPrefetch) * 4);
        }
        compute_step(lo, hi);
      }
    }
#pragma unroll
    for (int p = 0; p < kPrefetch; ++p) {
      if (s + p < steps) compute_step(ring_lo[p], ring_hi[p]);
    }
  }

  // ---- sum the k slices of each tile through shared memory (exact in int32) ----
  if constexpr (kWarpsK > 1) {
    __syncthreads();
    w4a16::reduce_k_slices<kTokTiles, kWarpsK, kTilesPerCta>(acc, reinterpret_cast<int32_t*>(smem), warp_k,
                                                             warp_tile, lane);
  }

  // ---- epilogue: scale by absmax_x * absmax_w / 127^2, add the outlier columns (once), write ----
  const bool writer = active && warp_k == 0;
  const int outliers = a.status->outlier_count;
  auto outlier_term = [&](int token, int row) {
    float sum = 0.f;
    const float w_absmax = a.w_absmax[row];
    for (int i = 0; i < outliers; ++i) {
      const int col = a.outlier_cols[i];
      const uint16_t bits = a.x_outliers[static_cast<int64_t>(token) * a.k + i];
      sum +=
          from_16bit<kBf16>(bits) * int8q::dequantize(a.w[static_cast<int64_t>(row) * a.k + col], w_absmax);
    }
    return sum;
  };
  auto* y = static_cast<uint16_t*>(a.y);
  if (writer) {
#pragma unroll
    for (int tt = 0; tt < kTokTiles; ++tt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int token = token_base + tt * 8 + 2 * t + (i & 1);
        const int row = row0 + 8 * (i >> 1);
        if (token >= a.m) continue;
        const float value =
            static_cast<float>(acc[tt][i]) * (a.x_absmax[token] * a.w_absmax[row] * (1.0f / 16129.0f));
        if (a.splits == 1) {
          y[static_cast<int64_t>(token) * a.n + row] = to_output<kBf16>(value + outlier_term(token, row));
        } else {
          a.partials[(static_cast<int64_t>(split) * a.m + token) * a.n + row] = value;
        }
      }
    }
  }
  if (a.splits == 1) return;

  // Split-K across CTAs: the last CTA of the tile adds the partials in split order, then the outliers.
  __shared__ bool is_last;
  __threadfence();
  __syncthreads();
  const int counter = blockIdx.z * gridDim.x + blockIdx.x;
  if (threadIdx.x == 0)
    is_last = atomicAdd(&a.counters[counter], 1u) == static_cast<unsigned int>(a.splits - 1);
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  const int first_row = blockIdx.x * kTilesPerCta * 16;
  const int rows = min(kTilesPerCta * 16, a.n - first_row);
  const int tokens = min(kTokens, a.m - token_base);
  const int64_t stride = static_cast<int64_t>(a.m) * a.n;
  for (int i = threadIdx.x; i < tokens * rows; i += kThreads) {
    const int token = token_base + i / rows, row = first_row + i % rows;
    const float* p = a.partials + static_cast<int64_t>(token) * a.n + row;
    float sum = 0.f;
    for (int sp = 0; sp < a.splits; ++sp) sum += __ldcg(p + sp * stride);
    y[static_cast<int64_t>(token) * a.n + row] = to_output<kBf16>(sum + outlier_term(token, row));
  }
  if (threadIdx.x == 0) a.counters[counter] = 0;
}

template <bool kBf16, int kTokTiles, int kWarpsK>
void launch_variant(const Int8GemmArgs& a, cudaStream_t stream) {
  constexpr int kTokens = 8 * kTokTiles;
  const int slice = kTokens * (a.steps_per_split * kStepK + kRowPad);
  const int smem = std::max(slice, kWarps * kTokTiles * 4 * 32 * 4);  // the slice, or the k-slice reduction
  // Allowed all the shared memory the device offers once (thread-safe static init); each launch still asks
  // only for what it uses, which is what occupancy depends on.
  static const bool configured = [] {
    allow_all_dynamic_shared_memory(
        reinterpret_cast<const void*>(int8_skinny_kernel<kBf16, kTokTiles, kWarpsK>));
    return true;
  }();
  (void)configured;
  if (a.configure_only) return;
  const int rows_per_cta = 16 * (kWarps / kWarpsK);
  cudaLaunchConfig_t config{};
  config.gridDim = dim3((a.n + rows_per_cta - 1) / rows_per_cta, a.splits, (a.m + kTokens - 1) / kTokens);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute dependent = dependent_launch_attribute();
  if (dependent_launch_available()) {
    config.attrs = &dependent;
    config.numAttrs = 1;
  }
  QLLM_CUDA_CHECK(cudaLaunchKernelEx(&config, int8_skinny_kernel<kBf16, kTokTiles, kWarpsK>, a));
}

template <bool kBf16, int kTokTiles>
void launch_tokens(const Int8GemmArgs& a, int warps_k, cudaStream_t stream) {
  switch (warps_k) {
    case 1:
      launch_variant<kBf16, kTokTiles, 1>(a, stream);
      break;
    case 2:
      launch_variant<kBf16, kTokTiles, 2>(a, stream);
      break;
    case 4:
      launch_variant<kBf16, kTokTiles, 4>(a, stream);
      break;
    default:
      launch_variant<kBf16, kTokTiles, 8>(a, stream);
      break;
  }
}

template <bool kBf16>
void launch_typed(const Int8GemmArgs& a, int tok_tiles, int warps_k, cudaStream_t stream) {
  switch (tok_tiles) {
    case 1:
      launch_tokens<kBf16, 1>(a, warps_k, stream);
      break;
    case 2:
      launch_tokens<kBf16, 2>(a, warps_k, stream);
      break;
    default:
      launch_tokens<kBf16, 4>(a, warps_k, stream);
      break;
  }
}

}  // namespace

void launch_int8_skinny(const Int8GemmArgs& a, int tok_tiles, int warps_k, cudaStream_t stream) {
  if (a.bf16) {
    launch_typed<true>(a, tok_tiles, warps_k, stream);
  } else {
    launch_typed<false>(a, tok_tiles, warps_k, stream);
  }
}

}  // namespace qllm::kernels
