// Device helpers of the attention kernels: 16-bit element conversions (bf16/f16, round to nearest even),
// mma.sync m16n8k16 with f32 accumulators, ldmatrix, cp.async, and the paged-KV addressing. Kept in this
// folder until kernels/common/numeric.cuh (one set of 16-bit helpers for all kernels) lands; the lead
// unifies them. Include only from .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/attention/paged_attention.h"

namespace qllm::kernels::attention {

struct Bf16 {
  static constexpr bool kIsBf16 = true;
};
struct F16 {
  static constexpr bool kIsBf16 = false;
};

template <typename T>
__device__ __forceinline__ float to_float(uint32_t bits16) {
  if constexpr (T::kIsBf16) return __uint_as_float(bits16 << 16);
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
}

template <typename T>
__device__ __forceinline__ uint16_t from_float(float v) {
  if constexpr (T::kIsBf16) return __bfloat16_as_ushort(__float2bfloat16_rn(v));
  return __half_as_ushort(__float2half_rn(v));
}

// Two values rounded to T in one 32-bit register, `lo` in the low half (the lower column of a fragment).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  return static_cast<uint32_t>(from_float<T>(lo)) | (static_cast<uint32_t>(from_float<T>(hi)) << 16);
}

// The 8 elements of a 16-byte vector, in memory order.
template <typename T>
__device__ __forceinline__ void unpack8(const uint4& v, float (&out)[8]) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = to_float<T>(words[i] & 0xffffu);
    out[2 * i + 1] = to_float<T>(words[i] >> 16);
  }
}

template <typename T>
__device__ __forceinline__ uint4 pack8(const float (&in)[8]) {
  return make_uint4(pack2<T>(in[0], in[1]), pack2<T>(in[2], in[3]), pack2<T>(in[4], in[5]),
                    pack2<T>(in[6], in[7]));
}

// D = A (16x16, row) * B (16x8, col) + D, f32 accumulators.
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

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 16-byte global -> shared copy; with `valid` false nothing is read and the destination is zero-filled.
__device__ __forceinline__ void cp_async_16(void* smem, const void* global, bool valid) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(addr), "l"(global), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
}

// Where a sequence's key sits in a layer's pool: the element offset of its row of head_dim values for
// `kv_head`, or -1 when the key is past kv_len or its block-table entry is not a page of the pool (bad device
// data never makes a kernel read outside the pool).
__device__ __forceinline__ int64_t kv_row_offset(const PagedAttentionParams& p, int seq, int kv_head, int key,
                                                 int kv_len, int page_shift) {
  if (key >= kv_len) return -1;
  const int page =
      __ldg(p.block_table + static_cast<int64_t>(seq) * p.max_pages_per_seq + (key >> page_shift));
  if (page < 0 || page >= p.num_pages) return -1;
  return ((static_cast<int64_t>(page) * p.num_kv_heads + kv_head) * p.page_size + (key & (p.page_size - 1))) *
         p.head_dim;
}

// The batch description of sequence `seq`, clamped so that bad device data stays in bounds: query rows
// [q_begin, q_begin + q_len) within [0, num_tokens), kv_len within [0, the block-table row's capacity].
struct SequenceRows {
  int q_begin;
  int q_len;
  int kv_len;
};
__device__ __forceinline__ SequenceRows sequence_rows(const PagedAttentionParams& p, int seq) {
  const int tokens = static_cast<int>(p.num_tokens);
  int q_begin = __ldg(p.seq_q_start + seq);
  int q_end = __ldg(p.seq_q_start + seq + 1);
  q_begin = min(max(q_begin, 0), tokens);
  q_end = min(max(q_end, q_begin), tokens);
  const int capacity = p.max_pages_per_seq * p.page_size;
  const int kv_len = min(max(__ldg(p.seq_kv_len + seq), 0), capacity);
  return {q_begin, q_end - q_begin, kv_len};
}

__device__ __forceinline__ int log2_of_power_of_two(int v) {
  return 31 - __clz(v);
}

}  // namespace qllm::kernels::attention
