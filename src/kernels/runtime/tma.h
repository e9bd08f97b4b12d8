// TMA tensor maps (the descriptors of Hopper's bulk tensor copies), encoded on the host through the driver
// entry point, so qllm links the CUDA runtime only.
#pragma once

#include <cuda.h>

#include <cstdint>

namespace qllm {

// A row-major [rows, cols] matrix of 1- or 2-byte elements, copied in boxes of [box_rows, box_cols] into
// shared memory with the 128-byte swizzle (box_cols * element bytes must be 128). Out-of-range rows/cols read
// as 0.
CUtensorMap make_tensor_map_2d(const void* base, int element_bytes, int64_t rows, int64_t cols, int box_rows,
                               int box_cols);

// A row-major [rows, cols] matrix of 4-byte words, copied in boxes of [box_rows, box_cols] (box_cols * 4 a
// multiple of 16, at most 1024 bytes) into shared memory unswizzled, box rows back to back. Out-of-range
// rows/cols read as 0.
CUtensorMap make_word_tensor_map_2d(const void* base, int64_t rows, int64_t cols, int box_rows, int box_cols);

}  // namespace qllm
