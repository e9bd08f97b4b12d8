// A strided copy of 16-bit rows with zero fill, for the GEMMs' shape tails: the kernels work on weights
// padded to whole tiles, and where an activation row cannot be read in place (K not a multiple of 8 for the
// W4A16 kernels, K not a multiple of 64 for the int8 ones) or an output row cannot be written in place (N not
// a multiple of 64 for the int8 ones), the caller copies through a workspace sized in reserve().
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace qllm::kernels {

// dst[r, c] = (c < copy_cols ? src[r, c] : 0) for r < rows, c < dst_cols (row strides src_cols, dst_cols;
// copy_cols <= min(src_cols, dst_cols): a raw launcher, its callers (W4A16Gemm::run, QuantLinear::forward)
// pass shapes they validated). Element-wise 2-byte accesses: any alignment, any row length. Only enqueues
// work (graph-capturable).
void launch_copy_rows_16(const void* src, int64_t src_cols, void* dst, int64_t dst_cols, int64_t rows,
                         int64_t copy_cols, cudaStream_t stream);

}  // namespace qllm::kernels
