// Internal interface between the attention kernels (*.cu) and their host code (attention_cuda.cpp): raw
// launchers that trust their arguments, which the host code has validated.
#pragma once

#include <cuda_runtime.h>

#include "kernels/attention/paged_attention.h"
#include "kernels/attention/rope_kv.h"

namespace qllm::kernels::attention {

// The decode path's partial results: for each (sequence, q head, split), the running max m (log2 domain), the
// sum l of exp2(score - m) and the unnormalised output o [head_dim], all f32.
struct DecodeWorkspaceView {
  float* partial_out = nullptr;  // [num_seqs, num_q_heads, splits, head_dim]
  float* partial_ml = nullptr;   // [num_seqs, num_q_heads, splits, 2]: m, l
};

void launch_rope_kv(const RopeKvParams& p, cudaStream_t stream);

// Shared memory the prefill kernel takes for `head_dim` (dynamic; above 48 KiB at head_dim 128).
int prefill_shared_bytes(int head_dim);
// Lets the prefill kernels take their shared memory (once per device, before any launch or graph capture).
void configure_prefill_kernels();
void launch_prefill(const PagedAttentionParams& p, cudaStream_t stream);

// With splits == 1 the decode kernel writes the output itself; otherwise it writes the workspace and the
// combine kernel reduces it.
void launch_decode(const PagedAttentionParams& p, int splits, DecodeWorkspaceView workspace,
                   cudaStream_t stream);
void launch_decode_combine(const PagedAttentionParams& p, int splits, DecodeWorkspaceView workspace,
                           cudaStream_t stream);

}  // namespace qllm::kernels::attention
