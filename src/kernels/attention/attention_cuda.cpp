// Host side of the CUDA attention ops: validation, path choice, the decode workspace, launch checks.
#include "kernels/attention/attention_cuda.h"

#include <algorithm>

#include "core/checked_math.h"
#include "kernels/attention/attention_launch.h"
#include "qllm/error.h"

namespace qllm {

void launch_rope_kv(const RopeKvParams& p, cudaStream_t stream) {
  validate_rope_kv(p, KernelTarget::Cuda);
  kernels::attention::launch_rope_kv(p, stream);
  QLLM_CUDA_CHECK_LAUNCH();
}

PagedAttention::PagedAttention(int num_q_heads, int num_kv_heads, int head_dim)
    : num_q_heads_(num_q_heads), num_kv_heads_(num_kv_heads), head_dim_(head_dim) {
  QLLM_CHECK(num_q_heads >= 1 && num_kv_heads >= 1 && num_q_heads % num_kv_heads == 0,
             "paged attention: {} q heads are not a multiple of {} kv heads", num_q_heads, num_kv_heads);
  QLLM_CHECK(head_dim == 64 || head_dim == 128,
             "paged attention: head_dim {} (the CUDA kernels take 64 or 128)", head_dim);
  QLLM_CHECK(static_cast<int64_t>(num_kv_heads) * decode_head_groups(num_q_heads, num_kv_heads) <= 65535,
             "paged attention: {} kv heads exceed the CUDA grid", num_kv_heads);
}

void PagedAttention::reserve(int max_seqs, int64_t max_tokens, int64_t max_kv_len) {
  QLLM_CHECK(max_seqs >= 1 && max_seqs <= 65535, "paged attention: reserve for {} sequences (1 to 65535)",
             max_seqs);
  QLLM_CHECK(max_tokens >= 1 && max_kv_len >= 1,
             "paged attention: reserve for {} tokens and {} keys per sequence", max_tokens, max_kv_len);
  const int sms = multiprocessor_count();
  int64_t parts = 0;
  for (int n = 1; n <= max_seqs; ++n) {
    const int splits = decode_splits(n, num_q_heads_, num_kv_heads_, max_kv_len, sms);
    if (splits > 1)
      parts = std::max(parts, checked_mul(static_cast<int64_t>(n) * num_q_heads_, splits, "decode parts"));
  }
  partial_out_ = DeviceBuffer<float>();  // free the old workspace before taking the new one
  partial_ml_ = DeviceBuffer<float>();
  if (parts > 0) {
    const int64_t out_floats = checked_mul(parts, head_dim_, "paged attention decode workspace");
    partial_out_ =
        DeviceBuffer<float>(static_cast<size_t>(out_floats), "the paged attention decode workspace");
    partial_ml_ = DeviceBuffer<float>(static_cast<size_t>(2 * parts), "the paged attention decode workspace");
  }
  kernels::attention::configure_prefill_kernels();
  max_seqs_ = max_seqs;
  max_tokens_ = max_tokens;
  max_kv_len_ = max_kv_len;
  multiprocessors_ = sms;
  workspace_parts_ = parts;
}

AttentionPath PagedAttention::path_for(const PagedAttentionParams& p, AttentionPath requested) const {
  if (requested == AttentionPath::Auto)
    return p.max_q_len <= 1 ? AttentionPath::Decode : AttentionPath::Prefill;
  QLLM_CHECK(requested != AttentionPath::Decode || p.max_q_len <= 1,
             "paged attention: the decode path takes one query row per sequence, not max_q_len {}",
             p.max_q_len);
  return requested;
}

int PagedAttention::decode_splits_for(const PagedAttentionParams& p) const {
  return decode_splits(p.num_seqs, p.num_q_heads, p.num_kv_heads, p.max_kv_len, multiprocessors_);
}

void PagedAttention::run(const PagedAttentionParams& p, cudaStream_t stream, AttentionPath requested) {
  validate_paged_attention(p, KernelTarget::Cuda);
  QLLM_CHECK(max_seqs_ > 0, "paged attention: reserve() the workspace before the first run");
  QLLM_CHECK(p.num_q_heads == num_q_heads_ && p.num_kv_heads == num_kv_heads_ && p.head_dim == head_dim_,
             "paged attention: params for {}/{} heads of {}, the workspace was made for {}/{} heads of {}",
             p.num_q_heads, p.num_kv_heads, p.head_dim, num_q_heads_, num_kv_heads_, head_dim_);
  QLLM_CHECK(p.num_seqs <= max_seqs_ && p.num_tokens <= max_tokens_ && p.max_kv_len <= max_kv_len_,
             "paged attention: {} sequences, {} tokens, max_kv_len {} exceed the reservation ({}, {}, {})",
             p.num_seqs, p.num_tokens, p.max_kv_len, max_seqs_, max_tokens_, max_kv_len_);
  const AttentionPath path = path_for(p, requested);
  if (path == AttentionPath::Prefill) {
    kernels::attention::launch_prefill(p, stream);
    QLLM_CUDA_CHECK_LAUNCH();
    return;
  }
  const int splits = decode_splits_for(p);
  QLLM_CHECK(splits == 1 || static_cast<int64_t>(p.num_seqs) * p.num_q_heads * splits <= workspace_parts_,
             "paged attention: {} decode splits of {} sequences exceed the reserved workspace", splits,
             p.num_seqs);
  const kernels::attention::DecodeWorkspaceView workspace{partial_out_.data(), partial_ml_.data()};
  kernels::attention::launch_decode(p, splits, workspace, stream);
  QLLM_CUDA_CHECK_LAUNCH();
  if (splits > 1) {
    kernels::attention::launch_decode_combine(p, splits, workspace, stream);
    QLLM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace qllm
