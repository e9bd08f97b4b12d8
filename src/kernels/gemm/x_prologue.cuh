// Device side of x_prologue.h: a skinny GEMM CTA computes its slice of X (columns [col_begin, col_begin +
// cols) of its token rows) into shared memory, rows `row_elems` apart, instead of copying it. Columns of the
// slice past K are zeros (as the plain copy leaves them: they meet zero weights). Every thread of the CTA
// calls these after wait_for_previous_kernel() (the inputs come from the kernels before). Include only from
// .cu files.
#pragma once

#include <cstdint>

#include "kernels/common/numeric.cuh"
#include "kernels/common/row_ops.cuh"
#include "kernels/gemm/w4a16_launch.h"
#include "kernels/gemm/x_prologue.h"

namespace qllm::kernels::prologue {

// Brings the 32 bytes at p into L1 (8 f32 values; lines are 128 bytes, so 4 chunks share one).
__device__ __forceinline__ void prefetch_l1(const float* p) {
  asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
}

// Zeros in the slice's columns past K, for `rows` rows.
__device__ __forceinline__ void zero_tail(uint16_t* smem, int row_elems, int rows, int k, int col_begin,
                                          int cols) {
  const int first = max(k - col_begin, 0);  // the first slice column past K (K % 8 == 0)
  const int chunks = max(cols - first, 0) / 8;
  for (int i = threadIdx.x; i < rows * chunks; i += blockDim.x) {
    *reinterpret_cast<uint4*>(smem + (i / chunks) * row_elems + first + (i % chunks) * 8) =
        make_uint4(0, 0, 0, 0);
  }
}

// RMSNorm of residual (+ delta) (norm/rmsnorm.cu's arithmetic, and its thread mapping: chunk t + j * threads,
// so the double sum of squares is reduced in that kernel's order, bit-identical where it runs one chunk per
// thread). One row at a time: rows [first_row, first_row + rows) of X. `writes_residual`: this CTA (one per
// token block) stores residual + delta of whole rows in p.residual_out. K % 8 == 0, K <= 8 * 2 * threads,
// rows 16-byte aligned (the host checks). The row's values are loaded twice (the second time from L1)
// rather than held across the reduction: the GEMM's weight loads in flight hold most registers.
template <typename T>
__device__ void residual_rmsnorm(const XPrologue& p, int k, int64_t first_row, int rows, uint16_t* smem,
                                 int row_elems, int col_begin, int cols, bool writes_residual) {
  using Scalar = typename Numeric<T>::Scalar;
  __shared__ double scratch[32];
  const int chunks = k / 8;
  // r (+ d) of chunk c of the row at `base`, as the rmsnorm kernel adds them.
  auto load_sum = [&](int64_t base, int c, float(&v)[8]) {
    ops::load8(p.residual + base + c * 8, true, 8, v);
    if (p.delta != nullptr) {
      float d[8];
      ops::load8(static_cast<const Scalar*>(p.delta) + base + c * 8, true, 8, d);
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] = __fadd_rn(v[e], d[e]);
    }
  };
  for (int row = 0; row < rows; ++row) {
    const int64_t base = (first_row + row) * k;
    double sum_sq = 0.0;
#pragma unroll
    for (int j = 0; j < kPrologueMaxChunksPerThread; ++j) {
      const int c = threadIdx.x + j * blockDim.x;
      if (c >= chunks) continue;
      if (row == 0) prefetch_l1(p.norm_weight + c * 8);  // read after the reduction
      float v[8];
      load_sum(base, c, v);
#pragma unroll
      for (int e = 0; e < 8; ++e) sum_sq += static_cast<double>(v[e]) * v[e];  // exact products
    }
    sum_sq = ops::block_sum(sum_sq, scratch);
    const float inv_rms = ops::inverse_rms(sum_sq, k, p.eps);
#pragma unroll
    for (int j = 0; j < kPrologueMaxChunksPerThread; ++j) {
      const int c = threadIdx.x + j * blockDim.x;
      if (c >= chunks) continue;
      const int col = c * 8 - col_begin;
      const bool in_slice = col >= 0 && col < cols;
      if (!in_slice && !(writes_residual && p.delta != nullptr)) continue;
      float v[8];
      load_sum(base, c, v);
      if (writes_residual && p.delta != nullptr) ops::store8(p.residual_out + base + c * 8, true, 8, v);
      if (!in_slice) continue;
      float w[8], o[8];
      ops::load8(p.norm_weight + c * 8, true, 8, w);
#pragma unroll
      for (int e = 0; e < 8; ++e) o[e] = ops::rms_scaled(w[e], v[e], inv_rms);
      *reinterpret_cast<uint4*>(smem + row * row_elems + col) = pack8<T>(o);
    }
  }
  zero_tail(smem, row_elems, rows, k, col_begin, cols);
}

// SwiGLU (elementwise/swiglu.cu's arithmetic) of the slice's columns, a chunk of 8 per thread and round (two
// in flight made ptxas spill in the GEMM's 8-token variants).
template <typename T>
__device__ void swiglu(const XPrologue& p, int k, int64_t first_row, int rows, uint16_t* smem, int row_elems,
                       int col_begin, int cols) {
  const auto* gate_up = static_cast<const uint16_t*>(p.gate_up);
  const int chunks_per_row = max(min(cols, k - col_begin), 0) / 8;  // the slice's chunks inside K
  for (int item = threadIdx.x; item < rows * chunks_per_row; item += blockDim.x) {
    const int row = item / chunks_per_row, col = (item % chunks_per_row) * 8;
    const uint16_t* src = gate_up + (first_row + row) * 2 * k + col_begin + col;
    float g[8], u[8], o[8];
    unpack8<T>(*reinterpret_cast<const uint4*>(src), g);
    unpack8<T>(*reinterpret_cast<const uint4*>(src + k), u);
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = ops::silu_mul(g[e], u[e]);
    *reinterpret_cast<uint4*>(smem + row * row_elems + col) = pack8<T>(o);
  }
  zero_tail(smem, row_elems, rows, k, col_begin, cols);
}

}  // namespace qllm::kernels::prologue
