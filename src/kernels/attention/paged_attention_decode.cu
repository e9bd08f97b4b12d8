// Paged attention, decode path (one query row per sequence; spec: paged_attention_ref.cpp), flash-decoding:
//  - grid (splits, kv heads x head groups, sequences): a CTA takes the up-to-8 q heads of one GQA group that
//    share a kv head (so K/V are read once per group) and one chunk of the sequence's keys; the chunk is
//    computed on the device from the real kv_len (attention_layout.h: decode_split_keys), so the grid depends
//    only on host bounds (CUDA graphs) while a short sequence uses few CTAs and the others exit at once;
//  - per block of 64 keys (32 at head_dim 128): D/8 lanes share a key, each holding 16 bytes of K and of V
//    (both loads issued up front), dot products on CUDA cores reduced across those lanes by shuffles, the
//    block's scores through shared memory, one warp per head updates the running max/sum (f32, exp2 domain),
//    then every lane accumulates p x V for its keys (probabilities stay f32);
//  - with one split the CTA writes the output; otherwise it writes (m, l, unnormalised o) to the workspace
//    and the combine kernel (a warp per sequence and q head) merges the splits.
// What bounds it: HBM bandwidth on K/V (2 x kv_len x D x 2 bytes per kv head), latency for short contexts
// (two dependent memory round trips per block per CTA), and for wide GQA groups (8 heads) the CUDA-core FMAs:
// about 8 FMA per K/V byte, near an H200's ratio of CUDA-core flops to bandwidth; MMA rows would lift it.
#include <cmath>
#include <cstdint>

#include "kernels/attention/attention_device.cuh"
#include "kernels/attention/attention_launch.h"
#include "kernels/attention/attention_layout.h"
#include "kernels/common/dependent_launch.cuh"

namespace qllm::kernels::attention {

namespace {

using qllm::attention::decode_split_keys;
using qllm::attention::decode_splits_used;
using qllm::attention::KeyRange;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kUnroll = 4;  // key rows in flight per lane
constexpr unsigned kFullMask = 0xffffffffu;

template <int D>
constexpr float scale_log2() {
  return static_cast<float>(1.4426950408889634 * (D == 64 ? 0.125 : 0.08838834764831845));
}

template <typename T, int D, int kHeads>
__global__ void __launch_bounds__(kThreads)
    decode_kernel(const PagedAttentionParams p, int splits, DecodeWorkspaceView workspace) {
  qllm::kernels::let_next_kernel_start();     // the output projection may start its weight loads now
  qllm::kernels::wait_for_previous_kernel();  // launched as a dependent: q and the cache come from RoPE
  constexpr int kLanesPerKey = D / 8;         // 16 bytes of a key row per lane
  constexpr int kKeysPerWarp = 32 / kLanesPerKey;
  constexpr int kBlockKeys = kUnroll * kWarps * kKeysPerWarp;
  static_assert(qllm::attention::kDecodeGranule % kBlockKeys == 0, "chunks are whole blocks");
  __shared__ float s_p[kHeads][kBlockKeys];  // the block's scores, then probabilities
  __shared__ float s_m[kHeads], s_l[kHeads], s_alpha[kHeads];
  __shared__ float s_o[kWarps][kHeads][D];

  const int split = blockIdx.x, seq = blockIdx.z;
  const int head_groups = gridDim.y / p.num_kv_heads;
  const int kv_head = blockIdx.y / head_groups;
  const int group = p.num_q_heads / p.num_kv_heads;
  const int first = (blockIdx.y % head_groups) * kHeads;  // this CTA's first head within the group
  const SequenceRows rows = sequence_rows(p, seq);
  if (rows.q_len != 1) return;  // a padding sequence (0 rows); more rows never come here (host bound)
  const KeyRange keys = decode_split_keys(rows.kv_len, splits, split);

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  auto row_offset = [&](int h) {  // element offset of head first + h of the query row in q and out
    return (static_cast<int64_t>(rows.q_begin) * p.num_q_heads + kv_head * group + first + h) * D;
  };
  auto* out = static_cast<uint16_t*>(p.out);
  if (keys.begin >= keys.end) {
    if (splits == 1) {  // an empty sequence (bad data): zeros; with splits the combine kernel writes them
      for (int i = tid; i < kHeads * D; i += kThreads) {
        if (first + i / D < group) out[row_offset(i / D) + i % D] = from_float<T>(0.f);
      }
    }
    return;
  }

  const int slice = lane % kLanesPerKey;     // this lane's 8 elements of a row: [slice * 8, slice * 8 + 8)
  const int key_lane = lane / kLanesPerKey;  // which of the warp's keys of a step
  const auto* q = static_cast<const uint16_t*>(p.q);
  float qv[kHeads][8];
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
    if (first + h < group) {
      unpack8<T>(__ldg(reinterpret_cast<const uint4*>(q + row_offset(h) + slice * 8)), qv[h]);
#pragma unroll
      for (int e = 0; e < 8; ++e) qv[h][e] *= scale_log2<D>();
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) qv[h][e] = 0.f;
    }
  }
  if (tid < kHeads) {
    s_m[tid] = -INFINITY;
    s_l[tid] = 0.f;
  }
  float acc[kHeads][8];
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[h][e] = 0.f;
  }

  const auto* k_pool = static_cast<const uint16_t*>(p.k_pool);
  const auto* v_pool = static_cast<const uint16_t*>(p.v_pool);
  const int page_shift = log2_of_power_of_two(p.page_size);
  const int key_end = static_cast<int>(keys.end);
  for (int block = static_cast<int>(keys.begin); block < key_end; block += kBlockKeys) {
    // K and V rows of this lane's keys, all loads in flight at once.
    uint4 k_regs[kUnroll], v_regs[kUnroll];
    bool valid[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int key = block + (u * kWarps + warp) * kKeysPerWarp + key_lane;
      const int64_t offset =
          key < key_end ? kv_row_offset(p, seq, kv_head, key, rows.kv_len, page_shift) : int64_t{-1};
      valid[u] = offset >= 0;
      k_regs[u] = v_regs[u] = make_uint4(0, 0, 0, 0);
      if (valid[u]) {
        k_regs[u] = __ldg(reinterpret_cast<const uint4*>(k_pool + offset + slice * 8));
        v_regs[u] = __ldg(reinterpret_cast<const uint4*>(v_pool + offset + slice * 8));
      }
    }
    // Scores: partial dot products over 8 elements, summed over the key's lanes.
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float kf[8];
      unpack8<T>(k_regs[u], kf);
      const int index = (u * kWarps + warp) * kKeysPerWarp + key_lane;
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
        float dot = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) dot = fmaf(qv[h][e], kf[e], dot);
#pragma unroll
        for (int offset = kLanesPerKey / 2; offset > 0; offset >>= 1)
          dot += __shfl_xor_sync(kFullMask, dot, offset);
        if (slice == 0) s_p[h][index] = valid[u] ? dot : -INFINITY;
      }
    }
    __syncthreads();
    // Softmax update, one warp per head: running max m, sum l, and the factor alpha for the accumulators.
    for (int h = warp; h < kHeads; h += kWarps) {
      float block_max = -INFINITY;
      for (int i = lane; i < kBlockKeys; i += 32) block_max = fmaxf(block_max, s_p[h][i]);
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) {
        block_max = fmaxf(block_max, __shfl_xor_sync(kFullMask, block_max, offset));
      }
      const float m_old = s_m[h];
      const float m_new = fmaxf(m_old, block_max);
      const float m_use = m_new == -INFINITY ? 0.f : m_new;
      float sum = 0.f;
      for (int i = lane; i < kBlockKeys; i += 32) {
        const float prob = exp2f(s_p[h][i] - m_use);
        s_p[h][i] = prob;
        sum += prob;
      }
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(kFullMask, sum, offset);
      if (lane == 0) {
        const float alpha = exp2f(m_old - m_use);
        s_alpha[h] = alpha;
        s_l[h] = s_l[h] * alpha + sum;
        s_m[h] = m_new;
      }
    }
    __syncthreads();
    // acc = alpha x acc + sum over this lane's keys of p x v.
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
      const float alpha = s_alpha[h];
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[h][e] *= alpha;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (!valid[u]) continue;
      float vf[8];
      unpack8<T>(v_regs[u], vf);
      const int index = (u * kWarps + warp) * kKeysPerWarp + key_lane;
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
        const float prob = s_p[h][index];
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[h][e] = fmaf(prob, vf[e], acc[h][e]);
      }
    }
    __syncthreads();  // s_p and s_alpha are rewritten by the next block
  }

  // Sum the accumulators over the warp's keys (lanes with the same slice), then over the warps.
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
#pragma unroll
      for (int offset = kLanesPerKey; offset < 32; offset <<= 1) {
        acc[h][e] += __shfl_xor_sync(kFullMask, acc[h][e], offset);
      }
    }
  }
  if (key_lane == 0) {
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
#pragma unroll
      for (int e = 0; e < 8; ++e) s_o[warp][h][slice * 8 + e] = acc[h][e];
    }
  }
  __syncthreads();
  for (int i = tid; i < kHeads * D; i += kThreads) {
    const int h = i / D, d = i % D;
    if (first + h >= group) continue;
    float o = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += s_o[w][h][d];
    if (splits == 1) {
      const float l = s_l[h];
      out[row_offset(h) + d] = from_float<T>(l > 0.f ? o / l : 0.f);
    } else {
      const int64_t part =
          (static_cast<int64_t>(seq) * p.num_q_heads + kv_head * group + first + h) * splits + split;
      workspace.partial_out[part * D + d] = o;
      if (d == 0) {
        workspace.partial_ml[2 * part] = s_m[h];
        workspace.partial_ml[2 * part + 1] = s_l[h];
      }
    }
  }
}

// One warp per (sequence, q head): out = sum_i w_i o_i / sum_i w_i l_i with w_i = exp2(m_i - max m).
template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    combine_kernel(const PagedAttentionParams p, int splits, DecodeWorkspaceView workspace) {
  qllm::kernels::let_next_kernel_start();
  qllm::kernels::wait_for_previous_kernel();  // launched as a dependent: the partials come from decode_kernel
  constexpr int kPerLane = D / 32;
  const int pair = blockIdx.x * kWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (pair >= p.num_seqs * p.num_q_heads) return;
  const int seq = pair / p.num_q_heads, head = pair % p.num_q_heads;
  const SequenceRows rows = sequence_rows(p, seq);
  if (rows.q_len != 1) return;
  const int used = decode_splits_used(rows.kv_len, splits);
  uint16_t* const dst =
      static_cast<uint16_t*>(p.out) + (static_cast<int64_t>(rows.q_begin) * p.num_q_heads + head) * D;
  const int64_t base = (static_cast<int64_t>(seq) * p.num_q_heads + head) * splits;
  const float* const ml = workspace.partial_ml + 2 * base;
  float max_m = -INFINITY;
  for (int i = lane; i < used; i += 32) max_m = fmaxf(max_m, ml[2 * i]);
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    max_m = fmaxf(max_m, __shfl_xor_sync(kFullMask, max_m, offset));
  if (max_m == -INFINITY) {  // no keys (or no finite score): zeros
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) dst[lane + 32 * c] = from_float<T>(0.f);
    return;
  }
  float total = 0.f;
  for (int i = lane; i < used; i += 32) total += exp2f(ml[2 * i] - max_m) * ml[2 * i + 1];
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) total += __shfl_xor_sync(kFullMask, total, offset);
  float o[kPerLane] = {};
  const float* const partial = workspace.partial_out + base * D;
  for (int i = 0; i < used; ++i) {
    const float weight = exp2f(ml[2 * i] - max_m);
#pragma unroll
    for (int c = 0; c < kPerLane; ++c)
      o[c] = fmaf(weight, partial[static_cast<int64_t>(i) * D + lane + 32 * c], o[c]);
  }
  const float inv = total > 0.f ? 1.f / total : 0.f;
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) dst[lane + 32 * c] = from_float<T>(o[c] * inv);
}

template <typename T, int D>
void launch_decode_typed(const PagedAttentionParams& p, int splits, DecodeWorkspaceView workspace,
                         cudaStream_t stream) {
  const int heads = decode_heads_per_cta(p.num_q_heads, p.num_kv_heads);
  const dim3 grid(static_cast<unsigned>(splits),
                  static_cast<unsigned>(p.num_kv_heads * decode_head_groups(p.num_q_heads, p.num_kv_heads)),
                  static_cast<unsigned>(p.num_seqs));
  switch (heads) {
    case 1:
      qllm::kernels::launch_dependent(decode_kernel<T, D, 1>, grid, dim3(kThreads), 0, stream, p, splits,
                                      workspace);
      break;
    case 2:
      qllm::kernels::launch_dependent(decode_kernel<T, D, 2>, grid, dim3(kThreads), 0, stream, p, splits,
                                      workspace);
      break;
    case 4:
      qllm::kernels::launch_dependent(decode_kernel<T, D, 4>, grid, dim3(kThreads), 0, stream, p, splits,
                                      workspace);
      break;
    default:
      qllm::kernels::launch_dependent(decode_kernel<T, D, 8>, grid, dim3(kThreads), 0, stream, p, splits,
                                      workspace);
      break;
  }
}

template <typename T, int D>
void launch_combine_typed(const PagedAttentionParams& p, int splits, DecodeWorkspaceView workspace,
                          cudaStream_t stream) {
  const int64_t pairs = static_cast<int64_t>(p.num_seqs) * p.num_q_heads;
  const dim3 grid(static_cast<unsigned>((pairs + kWarps - 1) / kWarps));
  qllm::kernels::launch_dependent(combine_kernel<T, D>, grid, dim3(kThreads), 0, stream, p, splits,
                                  workspace);
}

}  // namespace

void launch_decode(const PagedAttentionParams& p, int splits, DecodeWorkspaceView workspace,
                   cudaStream_t stream) {
  const bool bf16 = p.dtype == DType::BF16;
  if (p.head_dim == 64) {
    bf16 ? launch_decode_typed<Bf16, 64>(p, splits, workspace, stream)
         : launch_decode_typed<F16, 64>(p, splits, workspace, stream);
  } else {
    bf16 ? launch_decode_typed<Bf16, 128>(p, splits, workspace, stream)
         : launch_decode_typed<F16, 128>(p, splits, workspace, stream);
  }
}

void launch_decode_combine(const PagedAttentionParams& p, int splits, DecodeWorkspaceView workspace,
                           cudaStream_t stream) {
  const bool bf16 = p.dtype == DType::BF16;
  if (p.head_dim == 64) {
    bf16 ? launch_combine_typed<Bf16, 64>(p, splits, workspace, stream)
         : launch_combine_typed<F16, 64>(p, splits, workspace, stream);
  } else {
    bf16 ? launch_combine_typed<Bf16, 128>(p, splits, workspace, stream)
         : launch_combine_typed<F16, 128>(p, splits, workspace, stream);
  }
}

}  // namespace qllm::kernels::attention
