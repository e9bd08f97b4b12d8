// Causal GQA attention over the paged KV cache, for a batch of sequences of different lengths: the
// parameters shared by the CUDA kernels and the CPU reference, the reference itself (the spec), and the
// host-side planning of the decode path. No CUDA types here (the CPU-only build compiles it); the CUDA
// entry point is the PagedAttention class of attention_cuda.h.
//
// Batch description (notes/engine_design.md, "Data layouts"): query rows are grouped by sequence;
// seq_q_start [num_seqs + 1] are their prefix sums, seq_kv_len [num_seqs] the keys each sequence has after
// this pass (cached + new, already stored by rope_kv). Query i of sequence s sits at position
// seq_kv_len[s] - q_len(s) + i and attends to keys 0..position. Sequence s reads block-table row s. A
// sequence with no query rows (q_len 0, e.g. a padding slot of a CUDA-graph bucket) is skipped.
//
// Numerics: out = softmax(q k^T / sqrt(D)) v per (query, head) with q heads h -> kv head h / (Hq / Hkv).
// The reference computes in double from the stored T values and rounds the output to T once. The kernels
// compute scores and the softmax in f32 (exp2 of log2e-scaled scores, running max); prefill rounds the
// probabilities to T for the P V product on tensor cores (as flash-attention does), decode keeps them f32.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/attention/rope_kv.h"  // KernelTarget
#include "qllm/dtype.h"

namespace qllm {

struct PagedAttentionParams {
  const void* q = nullptr;       // T [num_tokens, num_q_heads, head_dim]
  void* out = nullptr;           // T [num_tokens, num_q_heads, head_dim]; rows of skipped sequences untouched
  const void* k_pool = nullptr;  // T [num_pages, num_kv_heads, page_size, head_dim], this layer's
  const void* v_pool = nullptr;  // T, same shape
  const int32_t* block_table = nullptr;  // [num_seqs, max_pages_per_seq]; row s = sequence s's page ids
  const int32_t* seq_q_start = nullptr;  // [num_seqs + 1]
  const int32_t* seq_kv_len = nullptr;   // [num_seqs]
  DType dtype = DType::BF16;
  int num_seqs = 0;
  int64_t num_tokens = 0;  // rows of q and out (at least seq_q_start[num_seqs])
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int page_size = 0;
  int64_t num_pages = 0;
  int max_pages_per_seq = 0;
  // Host-known bounds of this pass (with CUDA graphs: fixed at capture, the device values may change below
  // them between replays). They size the grids; a device value above its bound is not computed correctly.
  int64_t max_q_len = 0;   // most query rows of one sequence (1: the decode path)
  int64_t max_kv_len = 0;  // most keys of one sequence
};

// Throws qllm::Error naming the field when shapes, bounds or pointers do not fit `target` (the CUDA kernels
// take bf16/f16, head_dim 64 or 128, page sizes that are powers of two up to 1024, 16-byte aligned buffers).
void validate_paged_attention(const PagedAttentionParams& p, KernelTarget target);

// The CPU reference on host pointers (dtype f32, f16 or bf16; the same paged layout). Also checks the batch
// description the kernels trust: seq_q_start non-decreasing within [0, num_tokens], q_len <= max_q_len,
// q_len <= kv_len <= max_kv_len, and the page ids of every key read within [0, num_pages).
void paged_attention_reference(const PagedAttentionParams& p);

// The contiguous convenience for tests: one sequence's q [q_len, Hq, D] and keys/values [kv_len, Hkv, D]
// (f32, kv_len >= q_len), laid out in pages of `page_size` in a scrambled page order and run through
// paged_attention_reference in f32. Returns out [q_len, Hq, D].
std::vector<float> attention_contiguous_reference(const std::vector<float>& q, const std::vector<float>& k,
                                                  const std::vector<float>& v, int64_t q_len, int64_t kv_len,
                                                  int num_q_heads, int num_kv_heads, int head_dim,
                                                  int page_size);

// Decode planning (host): query heads one decode CTA handles (1, 2, 4 or 8: the GQA group rounded up to a
// power of two, at most 8) and the CTAs per kv head that cover the group.
int decode_heads_per_cta(int num_q_heads, int num_kv_heads);
int decode_head_groups(int num_q_heads, int num_kv_heads);
// Splits of the key range per (sequence, kv head): enough CTAs for about two waves on `multiprocessors` SMs,
// at least one per 1024 keys of the bound (no CTA walks a long context alone), at most one per 64 keys.
// Depends only on host-known values, so a captured grid stays valid for any lengths up to max_kv_len.
int decode_splits(int num_seqs, int num_q_heads, int num_kv_heads, int64_t max_kv_len, int multiprocessors);

}  // namespace qllm
