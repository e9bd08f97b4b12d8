// Token log-probability kernel (the spec: token_logprobs_ref.cpp): one CTA per row, the row's log normaliser
// (row_log_norm.cuh: the max, then the sum of exp(l - max) in double; 16-byte loads when aligned) minus the
// target's logit.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/runtime/cuda_utils.h"
#include "kernels/common/row_ops.cuh"
#include "kernels/sampling/row_log_norm.cuh"
#include "kernels/sampling/token_logprobs.h"

namespace qllm {

namespace {

using namespace kernels::ops;

constexpr int kThreads = 512;

template <typename T>
__global__ void __launch_bounds__(kThreads) token_logprobs_kernel(TokenLogProbsParams p, bool vector) {
  __shared__ float max_scratch[32];
  __shared__ double sum_scratch[32];
  const int64_t r = blockIdx.x;
  const int32_t target = p.targets[r];
  double nll = 0.0;
  if (target < -1 || target >= p.vocab) {
    nll = NAN;
  } else if (target >= 0) {
    const T* row = static_cast<const T*>(p.logits) + r * p.vocab;
    const RowLogNorm norm = row_log_norm<kThreads>(row, p.vocab, vector, max_scratch, sum_scratch);
    nll = norm.finite ? norm.log_norm - static_cast<double>(to_f32(row[target])) : NAN;
  }
  if (threadIdx.x != 0) return;
  if (isnan(nll) && p.error_flag != nullptr) atomicOr(p.error_flag, 1);
  if (p.nll != nullptr) p.nll[r] = nll;
  if (p.logprob != nullptr) p.logprob[r] = static_cast<float>(-nll);
}

template <typename T>
void enqueue_typed(const TokenLogProbsParams& p, cudaStream_t stream) {
  const bool vector = p.vocab % 8 == 0 && is_aligned(p.logits, 16);
  token_logprobs_kernel<T><<<static_cast<unsigned>(p.rows), kThreads, 0, stream>>>(p, vector);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

namespace detail {

void enqueue_token_logprobs(const TokenLogProbsParams& p, CUstream_st* stream) {
  if (p.dtype == DType::BF16) {
    enqueue_typed<__nv_bfloat16>(p, stream);
  } else {
    enqueue_typed<__half>(p, stream);
  }
}

}  // namespace detail
}  // namespace qllm
