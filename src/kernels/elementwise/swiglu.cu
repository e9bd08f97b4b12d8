// SwiGLU kernel (the spec: swiglu_ref.cpp): one thread per 8 outputs of a row, gate and up read as 16-byte
// vectors when aligned, every step an explicitly rounded f32 operation (no contraction into fma).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/dependent_launch.cuh"
#include "kernels/common/row_ops.cuh"
#include "kernels/elementwise/swiglu.h"
#include "kernels/runtime/cuda_utils.h"

namespace qllm {

namespace {

using namespace kernels::ops;

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) swiglu_kernel(const T* __restrict__ gate_up, T* __restrict__ out,
                                                          int64_t tokens, int64_t width, bool vector) {
  kernels::let_next_kernel_start();     // the down projection may start its weight loads now
  kernels::wait_for_previous_kernel();  // launched as a dependent: gate_up comes from the GEMM before
  const int64_t chunks_per_row = (width + 7) / 8;
  const int64_t chunk = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (chunk >= tokens * chunks_per_row) return;
  const int64_t token = chunk / chunks_per_row, col = (chunk % chunks_per_row) * 8;
  const int count = count8(width - col);
  const T* gate = gate_up + token * 2 * width + col;
  float g[8], u[8], o[8];
  load8(gate, vector, count, g);
  load8(gate + width, vector, count, u);
#pragma unroll
  for (int e = 0; e < 8; ++e) o[e] = silu_mul(g[e], u[e]);
  store8(out + token * width + col, vector, count, o);
}

template <typename T>
void enqueue_typed(const SwigluParams& p, cudaStream_t stream) {
  const bool vector = p.intermediate % 8 == 0 && is_aligned(p.gate_up, 16) && is_aligned(p.out, 16);
  const int64_t threads = p.tokens * ceil_div(p.intermediate, 8);
  kernels::launch_dependent(swiglu_kernel<T>, dim3(static_cast<unsigned>(ceil_div(threads, kThreads))),
                            dim3(kThreads), 0, stream, static_cast<const T*>(p.gate_up),
                            static_cast<T*>(p.out), p.tokens, p.intermediate, vector);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

namespace detail {

void enqueue_swiglu(const SwigluParams& p, CUstream_st* stream) {
  if (p.dtype == DType::BF16) {
    enqueue_typed<__nv_bfloat16>(p, stream);
  } else {
    enqueue_typed<__half>(p, stream);
  }
}

}  // namespace detail
}  // namespace qllm
