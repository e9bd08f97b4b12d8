// Device helpers of the row-wise ops (norm/, elementwise/, sampling/, attention's rope): typed 16-bit
// element conversion, 8-element vector loads/stores with tails, and block-wide reductions. The GEMMs work on
// raw bit patterns through common/numeric.cuh instead; these take __nv_bfloat16/__half values.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace qllm::kernels::ops {

constexpr unsigned kFullMask = 0xffffffffu;

// How many of the 8 values of a chunk exist when `remaining` values are left in the row.
__device__ __forceinline__ int count8(int64_t remaining) {
  return remaining < 8 ? static_cast<int>(remaining) : 8;
}

// f32 <-> 16-bit activation types (round to nearest even, as the host's float_to_bf16_bits/_half_bits).
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
__device__ __forceinline__ float to_f32(__half x) {
  return __half2float(x);
}
__device__ __forceinline__ uint32_t bits16(__nv_bfloat16 x) {
  return __bfloat16_as_ushort(x);
}
__device__ __forceinline__ uint32_t bits16(__half x) {
  return __half_as_ushort(x);
}
template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) {
  return __float2half_rn(x);
}

// The 16-bit element `e` (0..7) of a 16-byte vector, as f32.
template <typename T>
__device__ __forceinline__ float lane_f32(const uint4& v, int e) {
  const uint32_t word = e < 2 ? v.x : e < 4 ? v.y : e < 6 ? v.z : v.w;
  const auto bits = static_cast<unsigned short>((e & 1) ? word >> 16 : word & 0xffffu);
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(__ushort_as_bfloat16(bits));
  } else {
    return __half2float(__ushort_as_half(bits));
  }
}

// Eight consecutive elements p[0..7] as f32: one 16-byte load when `vector` (p 16-byte aligned), else
// element loads of the first `count` (the rest read as 0).
template <typename T>
__device__ __forceinline__ void load8(const T* p, bool vector, int count, float (&out)[8]) {
  if (vector) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
#pragma unroll
    for (int e = 0; e < 8; ++e) out[e] = lane_f32<T>(v, e);
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) out[e] = e < count ? to_f32(p[e]) : 0.0f;
  }
}
__device__ __forceinline__ void load8(const float* p, bool vector, int count, float (&out)[8]) {
  if (vector) {
    const float4 a = reinterpret_cast<const float4*>(p)[0];
    const float4 b = reinterpret_cast<const float4*>(p)[1];
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
    out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) out[e] = e < count ? p[e] : 0.0f;
  }
}

// Stores the first `count` of eight values (all eight with one 16-byte store when `vector`).
template <typename T>
__device__ __forceinline__ void store8(T* p, bool vector, int count, const float (&in)[8]) {
  if (vector) {
    uint32_t words[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      words[i] = bits16(from_f32<T>(in[2 * i])) | (bits16(from_f32<T>(in[2 * i + 1])) << 16);
    }
    *reinterpret_cast<uint4*>(p) = make_uint4(words[0], words[1], words[2], words[3]);
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      if (e < count) p[e] = from_f32<T>(in[e]);
    }
  }
}
__device__ __forceinline__ void store8(float* p, bool vector, int count, const float (&in)[8]) {
  if (vector) {
    reinterpret_cast<float4*>(p)[0] = make_float4(in[0], in[1], in[2], in[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(in[4], in[5], in[6], in[7]);
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      if (e < count) p[e] = in[e];
    }
  }
}

// The arithmetic of the row-wise ops, written once for every kernel that computes them (the norm and SwiGLU
// kernels, and the GEMM prologues that fold them in: gemm/x_prologue.cuh); each step one rounded f32
// operation, no contraction into fma, as the CPU reference computes them.
// RMSNorm's f32(1 / sqrt(sum_sq / n + eps)), in double.
__device__ __forceinline__ float inverse_rms(double sum_sq, int64_t n, double eps) {
  return static_cast<float>(1.0 / sqrt(sum_sq / static_cast<double>(n) + eps));
}
// RMSNorm's output w * (x * inv_rms).
__device__ __forceinline__ float rms_scaled(float w, float x, float inv_rms) {
  return __fmul_rn(w, __fmul_rn(x, inv_rms));
}
// SwiGLU's silu(g) * u = g / (1 + exp(-g)) * u.
__device__ __forceinline__ float silu_mul(float g, float u) {
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

__device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

template <typename V>
__device__ __forceinline__ V warp_sum(V v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total. `scratch`
// holds 32 values in shared memory; the call begins with a barrier, so it may be called again at once.
template <typename V>
__device__ __forceinline__ V block_sum(V v, V* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // the previous use of `scratch` is over
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  V total = lane < warps ? scratch[lane] : V(0);
  return warp_sum(total);
}

// Maximum over the block (as block_sum; NaN is ignored, as fmaxf does).
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

}  // namespace qllm::kernels::ops
