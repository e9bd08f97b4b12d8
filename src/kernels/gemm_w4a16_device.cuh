// Device helpers shared by the W4A16 GEMM kernels: INT4 -> bf16/f16 dequantization with the magic-number
// trick, the MMA instruction, ldmatrix and cp.async. Include only from .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/gemm_w4a16_launch.h"

namespace qllm::kernels::w4a16 {

// Activation element types. kMagic is the 16-bit pattern whose low mantissa bits can hold a nibble:
// bf16 0x4300 | n == 128 + n (ulp 1 at 128), f16 0x6400 | n == 1024 + n (ulp 1 at 1024).
struct Bf16 {
  static constexpr uint32_t kMagic = 0x4300;
  static constexpr bool kIsBf16 = true;
};
struct F16 {
  static constexpr uint32_t kMagic = 0x6400;
  static constexpr bool kIsBf16 = false;
};

// (x & 0x000f000f) | (magic << 16 | magic): one lop3 gives two magic values 128 + n (or 1024 + n).
__device__ __forceinline__ uint32_t lop3_and_or(uint32_t x, uint32_t mask, uint32_t magic) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(r) : "r"(x), "r"(mask), "r"(magic));  // (a & b) | c
  return r;
}

// Packed 16-bit pair subtraction and multiplication, exact where the callers rely on it.
template <typename T>
__device__ __forceinline__ uint32_t sub2(uint32_t a, uint32_t b) {
  if constexpr (T::kIsBf16) {
    __nv_bfloat162 r =
        __hsub2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  } else {
    __half2 r = __hsub2(*reinterpret_cast<__half2*>(&a), *reinterpret_cast<__half2*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  }
}
template <typename T>
__device__ __forceinline__ uint32_t mul2(uint32_t a, uint32_t b) {
  if constexpr (T::kIsBf16) {
    __nv_bfloat162 r =
        __hmul2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  } else {
    __half2 r = __hmul2(*reinterpret_cast<__half2*>(&a), *reinterpret_cast<__half2*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  }
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
  constexpr uint32_t kMagic2 = T::kMagic | (T::kMagic << 16);
  a[0] = sub2<T>(lop3_and_or(word, 0x000f000fu, kMagic2), zero_lo);        // row g,     k 2t, 2t+1
  a[1] = sub2<T>(lop3_and_or(word >> 4, 0x000f000fu, kMagic2), zero_hi);   // row g + 8, k 2t, 2t+1
  a[2] = sub2<T>(lop3_and_or(word >> 8, 0x000f000fu, kMagic2), zero_lo);   // row g,     k 2t+8, 2t+9
  a[3] = sub2<T>(lop3_and_or(word >> 12, 0x000f000fu, kMagic2), zero_hi);  // row g + 8, k 2t+8, 2t+9
}

// D = A (16x16, rows = weight rows) * B (16x8, columns = tokens) + D, fp32 accumulation.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (T::kIsBf16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 16-byte global -> shared copy; with `valid` false the destination is zero-filled (rows past M).
__device__ __forceinline__ void cp_async_16(void* smem, const void* global, bool valid) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(addr), "l"(global), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;");
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending));
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

template <typename T>
__device__ __forceinline__ float scale_to_float(uint32_t bits16) {
  if constexpr (T::kIsBf16) return __uint_as_float(bits16 << 16);
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
}

template <typename T>
__device__ __forceinline__ uint16_t float_to_output(float v) {
  if constexpr (T::kIsBf16) return __bfloat16_as_ushort(__float2bfloat16_rn(v));
  return __half_as_ushort(__float2half_rn(v));
}

// Split-K across CTAs, after this CTA wrote its partial sums for output rows [first_row, first_row + rows)
// and tokens [token_base, token_base + tokens): the last CTA of the tile (counted on args.counters[counter])
// adds the partials in split order (deterministic) and writes Y. Every thread of the CTA must call this.
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
    y[static_cast<int64_t>(token) * args.n + row] = float_to_output<T>(sum);
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
