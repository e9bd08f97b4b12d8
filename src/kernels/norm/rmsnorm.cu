// RMSNorm kernels (the spec: rmsnorm_ref.cpp; the rounding points: rmsnorm.h). One CTA per token row: each
// thread loads its chunks of 8 values into registers (16-byte loads when aligned), the sum of squares is
// reduced over the block in double, and the same registers are scaled and stored: one read, one write.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/dependent_launch.cuh"
#include "kernels/common/row_ops.cuh"
#include "kernels/norm/rmsnorm.h"
#include "kernels/runtime/cuda_utils.h"

namespace qllm {

namespace {

using namespace kernels::ops;

struct RmsNormArgs {
  int64_t hidden;
  double eps;
  const void* x;
  float* residual;
  const void* delta;
  const float* weight;
  void* out;
  bool vector;  // hidden % 8 == 0 and every pointer 16-byte aligned: whole chunks move as 16-byte vectors
};

// Thread t holds the chunks t, t + blockDim.x, ... (kChunks of them) of 8 consecutive values each.
template <typename T, int kChunks>
__global__ void __launch_bounds__(kChunks == 8 ? 1024 : 256) rmsnorm_kernel(RmsNormArgs a) {
  kernels::let_next_kernel_start();     // the GEMM that reads `out` may start its weight loads now
  kernels::wait_for_previous_kernel();  // launched as a dependent: the residual and delta come from before
  __shared__ double scratch[32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * a.hidden;
  const int64_t chunks = (a.hidden + 7) / 8;
  float v[kChunks][8];
  int count[kChunks];
  double sum_sq = 0.0;
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
    count[j] = c < chunks ? count8(a.hidden - c * 8) : 0;
    if (count[j] == 0) continue;
    const int64_t i = base + c * 8;
    if (a.residual != nullptr) {
      load8(a.residual + i, a.vector, count[j], v[j]);
      if (a.delta != nullptr) {
        float d[8];
        load8(static_cast<const T*>(a.delta) + i, a.vector, count[j], d);
#pragma unroll
        for (int e = 0; e < 8; ++e) v[j][e] = __fadd_rn(v[j][e], d[e]);
        store8(a.residual + i, a.vector, count[j], v[j]);
      }
    } else {
      load8(static_cast<const T*>(a.x) + i, a.vector, count[j], v[j]);
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) sum_sq += static_cast<double>(v[j][e]) * v[j][e];  // exact products
  }
  sum_sq = block_sum(sum_sq, scratch);
  const float inv_rms = inverse_rms(sum_sq, a.hidden, a.eps);
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
    if (count[j] == 0) continue;
    const int64_t c = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
    float w[8], o[8];
    load8(a.weight + c * 8, a.vector, count[j], w);
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = rms_scaled(w[e], v[j][e], inv_rms);
    store8(static_cast<T*>(a.out) + base + c * 8, a.vector, count[j], o);
  }
}

template <typename T>
void enqueue_typed(const RmsNormParams& p, cudaStream_t stream) {
  const RmsNormArgs a{p.hidden,
                      p.eps,
                      p.x,
                      p.residual,
                      p.delta,
                      p.weight,
                      p.out,
                      p.hidden % 8 == 0 && is_aligned(p.x, 16) && is_aligned(p.residual, 16) &&
                          is_aligned(p.delta, 16) && is_aligned(p.weight, 16) && is_aligned(p.out, 16)};
  // The fewest chunks per thread that keep the block at 256 threads (8 per thread beyond hidden 16384).
  const int64_t chunks = ceil_div(p.hidden, 8);
  int per_thread = 1;
  while (per_thread < 8 && ceil_div(chunks, per_thread) > 256) per_thread *= 2;
  const auto threads = static_cast<unsigned>(ceil_div(ceil_div(chunks, per_thread), 32) * 32);
  const dim3 grid(static_cast<unsigned>(p.tokens));
  switch (per_thread) {
    case 1:
      kernels::launch_dependent(rmsnorm_kernel<T, 1>, grid, dim3(threads), 0, stream, a);
      break;
    case 2:
      kernels::launch_dependent(rmsnorm_kernel<T, 2>, grid, dim3(threads), 0, stream, a);
      break;
    case 4:
      kernels::launch_dependent(rmsnorm_kernel<T, 4>, grid, dim3(threads), 0, stream, a);
      break;
    default:
      kernels::launch_dependent(rmsnorm_kernel<T, 8>, grid, dim3(threads), 0, stream, a);
      break;
  }
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

namespace detail {

void enqueue_rmsnorm(const RmsNormParams& p, CUstream_st* stream) {
  if (p.dtype == DType::BF16) {
    enqueue_typed<__nv_bfloat16>(p, stream);
  } else {
    enqueue_typed<__half>(p, stream);
  }
}

}  // namespace detail
}  // namespace qllm
