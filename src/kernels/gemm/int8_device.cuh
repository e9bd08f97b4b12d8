// Device code shared by the int8 GEMM kernels (int8_skinny.cu, int8_wide.cu).
#pragma once

#include "kernels/gemm/int8_launch.h"

namespace qllm::kernels::int8 {

// The first CTA zeroes the prep's outlier bitmap for the next call. Call after wait_for_previous_kernel():
// the prep's kernels have then finished reading it, and the next call's prep, launched in plain stream order,
// starts only after this kernel has finished.
__device__ __forceinline__ void clear_outlier_bitmap(const Int8GemmArgs& a) {
  if (a.outlier_bits == nullptr || blockIdx.x != 0 || blockIdx.y != 0 || blockIdx.z != 0) return;
  for (int w = threadIdx.x; w < a.bitmap_words; w += blockDim.x) a.outlier_bits[w] = 0;
}

}  // namespace qllm::kernels::int8
