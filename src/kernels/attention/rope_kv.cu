// RoPE + KV store kernel (spec: rope_kv_ref.cpp). One CTA of 128 threads per token: the token's D/2 angles
// are turned into cos/sin once (double sincos rounded to f32, like the reference) and shared by all its heads
// through shared memory; each thread then rotates 8 pairs (two 16-byte loads, two 16-byte stores) of a q or
// k head, or copies 16 bytes of a v head. Memory-bound: 2 x (Hq + 2 Hkv) x D bytes read and about as many
// written per token, e.g. 12 MiB for a 2048-token Llama-3.2-1B prefill, a few µs on an H200; at decode the
// launch dominates.
#include <cstdint>

#include "kernels/attention/attention_device.cuh"
#include "kernels/attention/attention_launch.h"
#include "kernels/common/dependent_launch.cuh"

namespace qllm::kernels::attention {

namespace {

constexpr int kThreads = 128;
constexpr int kMaxHalfDim = 64;  // head_dim 128

template <typename T>
__global__ void __launch_bounds__(kThreads) rope_kv_kernel(const RopeKvParams p) {
  kernels::let_next_kernel_start();     // attention may be scheduled now; it waits for this kernel's K/V
  kernels::wait_for_previous_kernel();  // launched as a dependent: q/k/v come from the GEMM before
  __shared__ float s_cos[kMaxHalfDim];
  __shared__ float s_sin[kMaxHalfDim];
  const int64_t t = blockIdx.x;
  const int D = p.head_dim, half = D / 2;
  const int Hq = p.num_q_heads, Hkv = p.num_kv_heads;

  const float position = static_cast<float>(__ldg(p.positions + t));
  for (int j = threadIdx.x; j < half; j += kThreads) {
    const float angle = __fmul_rn(position, __ldg(p.inv_freq + j));
    double s, c;
    sincos(static_cast<double>(angle), &s, &c);
    s_cos[j] = __double2float_rn(c);
    s_sin[j] = __double2float_rn(s);
  }
  __syncthreads();

  const int64_t slot = __ldg(p.slot_mapping + t);
  const bool store_kv = slot >= 0 && slot < p.num_pages * p.page_size;  // -1 (padding) or bad data: no store
  const int64_t page = store_kv ? slot / p.page_size : 0;
  const int64_t offset = store_kv ? slot % p.page_size : 0;
  const auto* row = static_cast<const uint16_t*>(p.qkv) + t * (Hq + 2 * Hkv) * D;
  auto* q_out = static_cast<uint16_t*>(p.q_out);
  auto* k_pool = static_cast<uint16_t*>(p.k_pool);
  auto* v_pool = static_cast<uint16_t*>(p.v_pool);

  const int half_chunks = half / 8;  // 16-byte chunks in half a head
  const int rotate_items = (Hq + Hkv) * half_chunks;
  const int copy_items = store_kv ? Hkv * (D / 8) : 0;
  for (int item = threadIdx.x; item < rotate_items + copy_items; item += kThreads) {
    if (item < rotate_items) {
      const int h = item / half_chunks;  // q heads, then k heads
      const int j0 = (item % half_chunks) * 8;
      uint16_t* dst;
      if (h < Hq) {
        dst = q_out + (t * Hq + h) * D;
      } else if (store_kv) {
        dst = k_pool + ((page * Hkv + (h - Hq)) * p.page_size + offset) * D;
      } else {
        continue;
      }
      const uint16_t* src = row + h * D + j0;
      float x1[8], x2[8], y1[8], y2[8];
      unpack8<T>(__ldg(reinterpret_cast<const uint4*>(src)), x1);
      unpack8<T>(__ldg(reinterpret_cast<const uint4*>(src + half)), x2);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float c = s_cos[j0 + e], s = s_sin[j0 + e];
        // Explicit roundings: no fused multiply-add, as the reference.
        y1[e] = __fsub_rn(__fmul_rn(x1[e], c), __fmul_rn(x2[e], s));
        y2[e] = __fadd_rn(__fmul_rn(x2[e], c), __fmul_rn(x1[e], s));
      }
      *reinterpret_cast<uint4*>(dst + j0) = pack8<T>(y1);
      *reinterpret_cast<uint4*>(dst + half + j0) = pack8<T>(y2);
    } else {
      const int v_item = item - rotate_items;
      const int h = v_item / (D / 8), c = v_item % (D / 8);
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(row + (Hq + Hkv + h) * D + c * 8));
      *reinterpret_cast<uint4*>(v_pool + ((page * Hkv + h) * p.page_size + offset) * D + c * 8) = v;
    }
  }
}

}  // namespace

void launch_rope_kv(const RopeKvParams& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return;
  const dim3 grid(static_cast<unsigned>(p.num_tokens));
  if (p.dtype == DType::BF16) {
    kernels::launch_dependent(rope_kv_kernel<Bf16>, grid, dim3(kThreads), 0, stream, p);
  } else {
    kernels::launch_dependent(rope_kv_kernel<F16>, grid, dim3(kThreads), 0, stream, p);
  }
}

}  // namespace qllm::kernels::attention
