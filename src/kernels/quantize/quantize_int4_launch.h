// Internal interface between the INT4 quantize kernels (quantize_int4.cu) and their host code
// (quantize_int4.cpp): raw launchers that trust their arguments, which the host code has validated.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/quantize/quantize_int4.h"

namespace qllm {

// Error reporting and the global path's cross-block state, in device memory.
struct Int4QuantizeScratch {
  static constexpr int kMaxCandidates = 15;  // int4::kCoarseCandidates
  unsigned long long first_nonfinite;        // smallest flat index of a NaN/Inf weight, or ~0
  unsigned long long first_overflow;         // smallest group whose plain scale overflows, or ~0
  unsigned int min_key;                      // global path: order-preserving keys of the min and max
  unsigned int max_key;
  unsigned long long sums[kMaxCandidates];
  int best_coarse;
};

// Scale-search settings passed by value to every kernel.
struct Int4SearchConfig {
  bool zero_point;
  bool bf16_scale;
  int mode;  // 0 none, 1 mse, 2 mae
};

namespace kernels {

// Enqueues the quantization of a validated [rows, cols] matrix (see quantize_int4.cu for the paths).
// `weights` must be 4-byte aligned; 16-byte alignment enables the warp path.
void launch_quantize_int4(const void* weights, bool bf16_weights, int64_t rows, int64_t cols,
                          GroupLayout layout, Granularity granularity, Int4SearchConfig config,
                          Int4DeviceView out, Int4QuantizeScratch* scratch, int multiprocessors,
                          cudaStream_t stream);

// Enqueues w' = (q - z) * s (with `mins`: q * s + m) for the layout's rows * cols weights into 16-byte-aligned
// fp16 or bf16 `out`.
void launch_dequantize_int4(const uint8_t* packed, const uint16_t* scales, const uint8_t* zeros,
                            const uint16_t* mins, const GroupLayout& layout, bool bf16_scale, bool bf16_out,
                            void* out, cudaStream_t stream);

}  // namespace kernels
}  // namespace qllm
