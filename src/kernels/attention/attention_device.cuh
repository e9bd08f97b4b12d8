// Device helpers of the attention kernels: the transposing ldmatrix and the paged-KV addressing. The dtype
// tags, 16-bit conversions (to_float, from_float, pack2, pack8, unpack8) and the mma.sync,
// ldmatrix and cp.async primitives are the shared ones of kernels/common/. Include only from .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/attention/paged_attention.h"
#include "kernels/common/dispatch.h"
#include "kernels/common/mma.cuh"
#include "kernels/common/numeric.cuh"

namespace qllm::kernels::attention {

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
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
