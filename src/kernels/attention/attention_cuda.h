// The CUDA entry points of the attention ops: RoPE + KV store, and paged attention with its decode
// workspace. Every call validates its parameters (qllm::Error naming the field), then only enqueues work on
// the given stream: no allocation, no synchronisation, no host read of device data, so the calls can be
// captured in a CUDA graph and replayed with new positions, slots, lengths and block tables in device memory.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/attention/paged_attention.h"
#include "kernels/attention/rope_kv.h"
#include "kernels/runtime/cuda_utils.h"

namespace qllm {

// rope_kv.h: rotates q and k, writes q to p.q_out, stores k and v into the layer's pools.
void launch_rope_kv(const RopeKvParams& p, cudaStream_t stream);

// Which kernel computes a pass: prefill (any query rows per sequence, tensor cores) or decode (one query row
// per sequence, the key range split over CTAs). Auto takes decode when max_q_len <= 1.
enum class AttentionPath { Auto, Prefill, Decode };

// Paged attention for one model shape, owning the decode path's workspace.
class PagedAttention {
 public:
  PagedAttention(int num_q_heads, int num_kv_heads, int head_dim);

  // Reserves for every later run: at most `max_seqs` sequences, `max_tokens` query rows and `max_kv_len`
  // keys per sequence (the workspace holds max over batch sizes n of n x Hq x decode_splits(n, ...) partial
  // results). Also lets the prefill kernels take their shared memory. Reserving again reallocates: capture
  // graphs after the last reserve.
  void reserve(int max_seqs, int64_t max_tokens, int64_t max_kv_len);

  // The path and the decode splits a run with these params takes (host values only).
  AttentionPath path_for(const PagedAttentionParams& p, AttentionPath requested = AttentionPath::Auto) const;
  int decode_splits_for(const PagedAttentionParams& p) const;

  // Enqueues out = attention(q, pages) on `stream`: one kernel (prefill, or decode with one split) or two
  // (decode and its combine).
  void run(const PagedAttentionParams& p, cudaStream_t stream, AttentionPath path = AttentionPath::Auto);

  size_t workspace_bytes() const { return partial_out_.bytes() + partial_ml_.bytes(); }

 private:
  int num_q_heads_;
  int num_kv_heads_;
  int head_dim_;
  int max_seqs_ = 0;
  int64_t max_tokens_ = 0;
  int64_t max_kv_len_ = 0;
  int multiprocessors_ = 0;
  int64_t workspace_parts_ = 0;      // (sequence, q head, split) triples the workspace holds
  DeviceBuffer<float> partial_out_;  // [parts, head_dim]
  DeviceBuffer<float> partial_ml_;   // [parts, 2]
};

}  // namespace qllm
