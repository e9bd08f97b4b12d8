// Device helpers shared by the W4A16 GEMM kernels (and the int8 skinny kernel): INT4 -> bf16/f16
// dequantization with the magic-number trick, scale-pair loads, the split-K finish and the cross-warp K
// reduction. Include only from .cu files.
#pragma once

#include <cstdint>

#include "kernels/common/mma.cuh"
#include "kernels/common/numeric.cuh"
#include "kernels/gemm/w4a16_launch.h"

namespace qllm::kernels::w4a16 {

// (x & 0x000f000f) | (magic << 16 | magic): one lop3 gives two magic values 128 + n (or 1024 + n).
__device__ __forceinline__ uint32_t lop3_and_or(uint32_t x, uint32_t mask, uint32_t magic) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(r) : "r"(x), "r"(mask), "r"(magic));  // (a & b) | c
  return r;
}

// Both halves of a 32-bit register set to its low (high) 16 bits.
__device__ __forceinline__ uint32_t low_pair(uint32_t x) {
  return __byte_perm(x, 0, 0x1010);
}
__device__ __forceinline__ uint32_t high_pair(uint32_t x) {
  return __byte_perm(x, 0, 0x3232);
}

// One k16 step of an A fragment: four registers of exact integers (q - z) as bf16/f16 pairs.
// `word` is the lane's 32-bit word for the step (docs/FORMATS.md); zero_lo/zero_hi are the pairs
// (magic + z, magic + z) of rows g and g + 8.
template <typename T>
__device__ __forceinline__ void dequant_step(uint32_t word, uint32_t zero_lo, uint32_t zero_hi,
                                             uint32_t (&a)[4]) {
  constexpr uint32_t kMagic2 = T::kNibbleMagic | (T::kNibbleMagic << 16);
  a[0] = sub2<T>(lop3_and_or(word, 0x000f000fu, kMagic2), zero_lo);        // row g,     k 2t, 2t+1
  a[1] = sub2<T>(lop3_and_or(word >> 4, 0x000f000fu, kMagic2), zero_hi);   // row g + 8, k 2t, 2t+1
  a[2] = sub2<T>(lop3_and_or(word >> 8, 0x000f000fu, kMagic2), zero_lo);   // row g,     k 2t+8, 2t+9
  a[3] = sub2<T>(lop3_and_or(word >> 12, 0x000f000fu, kMagic2), zero_hi);  // row g + 8, k 2t+8, 2t+9
}

// Weights are streamed once: keep them out of L1.
__device__ __forceinline__ uint4 load_weights(const uint4* p) {
  return __ldcs(p);
}

// A scale (or zero-point) pair: 4 bytes, read-only; the L2 fetches the whole 128-byte line, which holds the
// tile's next groups (a 32-byte sector per group otherwise).
__device__ __forceinline__ uint32_t load_pair(const uint32_t* p) {
  uint32_t r;
  asm("ld.global.nc.L2::128B.u32 %0, [%1];" : "=r"(r) : "l"(p));
  return r;
}

// Split-K across CTAs, after this CTA wrote its partial sums for output rows [first_row, first_row + rows)
// and tokens [token_base, token_base + tokens): the last CTA of the tile (counted on args.counters[counter])
// adds the partials in split order (deterministic) and writes Y (rows below args.n_out: padding rows have no
// output). Every thread of the CTA must call this.
template <typename T>
__device__ void splitk_finish(const W4A16KernelArgs& args, int counter, int first_row, int rows,
                              int token_base, int tokens) {
  __shared__ bool is_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    is_last = atomicAdd(&args.counters[counter], 1u) == static_cast<unsigned int>(args.splits - 1);
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  auto* y = static_cast<uint16_t*>(args.y);
  const int64_t split_stride = static_cast<int64_t>(args.m) * args.n;
  for (int i = threadIdx.x; i < tokens * rows; i += blockDim.x) {
    const int token = token_base + i / rows, row = first_row + i % rows;
    const float* p = args.partials + static_cast<int64_t>(token) * args.n + row;
    float sum = 0.f;
    int sp = 0;
    for (; sp + 4 <= args.splits; sp += 4) {  // four loads in flight, added in order
      const float a = __ldcg(p + sp * split_stride), b = __ldcg(p + (sp + 1) * split_stride);
      const float c = __ldcg(p + (sp + 2) * split_stride), d = __ldcg(p + (sp + 3) * split_stride);
      sum += a;
      sum += b;
      sum += c;
      sum += d;
    }
    for (; sp < args.splits; ++sp) sum += __ldcg(p + sp * split_stride);
    if (row < args.n_out) y[static_cast<int64_t>(token) * args.n_out + row] = from_float<T>(sum);
  }
  if (threadIdx.x == 0) args.counters[counter] = 0;  // ready for the next launch
}

// Skinny kernels (W4A16 and int8): sums the kWarpsK k-slices of each 16-row tile's accumulators through
// shared memory, in slice order (deterministic; exact for int32). Warps of slice 0 end with the sums in
// `acc`. `partial` holds kWarpsK * kTilesPerCta * kTokTiles * 4 * 32 values in shared memory that nobody
// else still reads (the caller's barrier before it; the activations lived there).
template <int kTokTiles, int kWarpsK, int kTilesPerCta, typename Acc>
__device__ __forceinline__ void reduce_k_slices(Acc (&acc)[kTokTiles][4], Acc* partial, int warp_k,
                                                int warp_tile, int lane) {
  constexpr int kValues = kTokTiles * 4;
  Acc* mine = partial + ((warp_k * kTilesPerCta + warp_tile) * kValues) * 32 + lane;
#pragma unroll
  for (int tt = 0; tt < kTokTiles; ++tt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) mine[(tt * 4 + i) * 32] = acc[tt][i];
  }
  __syncthreads();
  if (warp_k != 0) return;
#pragma unroll
  for (int tt = 0; tt < kTokTiles; ++tt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      Acc sum = 0;
      for (int kw = 0; kw < kWarpsK; ++kw)
        sum += partial[((kw * kTilesPerCta + warp_tile) * kValues + tt * 4 + i) * 32 + lane];
      acc[tt][i] = sum;
    }
  }
}

}  // namespace qllm::kernels::w4a16
