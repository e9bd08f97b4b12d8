// Top log-probabilities kernel (the spec: top_logprobs_ref.cpp): one CTA per row; the row's log normaliser
// (row_log_norm.cuh, as token_logprobs.cu); then k passes, each the largest (logit, -id) strictly below
// the previous pick in that order, so no list of picked ids is kept and ties come out lowest id first.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/common/row_ops.cuh"
#include "kernels/sampling/row_log_norm.cuh"
#include "kernels/runtime/cuda_utils.h"
#include "kernels/sampling/top_logprobs.h"

namespace qllm {

namespace {

using namespace kernels::ops;

constexpr int kThreads = 512;

// (v, id) becomes the better of itself and (other_v, other_id): larger logit, then lower id.
__device__ __forceinline__ void keep_better(float& v, int32_t& id, float other_v, int32_t other_id) {
  if (other_v > v || (other_v == v && other_id < id)) {
    v = other_v;
    id = other_id;
  }
}

__device__ __forceinline__ void warp_best(float& v, int32_t& id) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    keep_better(v, id, __shfl_xor_sync(kFullMask, v, o), __shfl_xor_sync(kFullMask, id, o));
  }
}

// The best (v, id) of the block; every thread gets it. Begins with a barrier, so it may be called again.
__device__ __forceinline__ void block_best(float& v, int32_t& id, float* v_scratch, int32_t* id_scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  warp_best(v, id);
  __syncthreads();
  if (lane == 0) {
    v_scratch[warp] = v;
    id_scratch[warp] = id;
  }
  __syncthreads();
  v = lane < warps ? v_scratch[lane] : -INFINITY;
  id = lane < warps ? id_scratch[lane] : INT_MAX;
  warp_best(v, id);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) top_logprobs_kernel(TopLogProbsParams p, bool vector) {
  __shared__ float max_scratch[32];
  __shared__ double sum_scratch[32];
  __shared__ int32_t id_scratch[32];
  const int64_t r = blockIdx.x;
  const T* row = static_cast<const T*>(p.logits) + r * p.vocab;
  int32_t* ids = p.ids + r * p.k;
  float* logprobs = p.logprobs + r * p.k;

  // ---- the log of the normaliser (and whether every logit is finite) ----
  const RowLogNorm norm = row_log_norm<kThreads>(row, p.vocab, vector, max_scratch, sum_scratch);
  if (!norm.finite) {  // the same value in every thread: the whole block leaves here
    if (threadIdx.x < p.k) {
      ids[threadIdx.x] = -1;
      logprobs[threadIdx.x] = NAN;
    }
    if (threadIdx.x == 0 && p.error_flag != nullptr) atomicOr(p.error_flag, 1);
    return;
  }
  const double log_norm = norm.log_norm;

  // ---- k picks, each the best strictly after the previous one in (logit desc, id asc) order ----
  float last_v = INFINITY;
  int32_t last_id = -1;
  for (int j = 0; j < p.k; ++j) {
    float best_v = -INFINITY;
    int32_t best_id = INT_MAX;
    for (int64_t c = threadIdx.x * 8; c < p.vocab; c += kThreads * 8) {
      float v[8];
      const int count = count8(p.vocab - c);
      load8(row + c, vector, count, v);
      for (int e = 0; e < count; ++e) {
        const auto id = static_cast<int32_t>(c + e);
        const bool after = v[e] < last_v || (v[e] == last_v && id > last_id);
        if (after) keep_better(best_v, best_id, v[e], id);
      }
    }
    block_best(best_v, best_id, max_scratch, id_scratch);
    if (threadIdx.x == 0) {
      ids[j] = best_id;
      logprobs[j] = static_cast<float>(static_cast<double>(best_v) - log_norm);
    }
    last_v = best_v;
    last_id = best_id;
  }
}

template <typename T>
void enqueue_typed(const TopLogProbsParams& p, cudaStream_t stream) {
  const bool vector = p.vocab % 8 == 0 && is_aligned(p.logits, 16);
  top_logprobs_kernel<T><<<static_cast<unsigned>(p.rows), kThreads, 0, stream>>>(p, vector);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

namespace detail {

void enqueue_top_logprobs(const TopLogProbsParams& p, CUstream_st* stream) {
  if (p.dtype == DType::BF16) {
    enqueue_typed<__nv_bfloat16>(p, stream);
  } else {
    enqueue_typed<__half>(p, stream);
  }
}

}  // namespace detail
}  // namespace qllm
