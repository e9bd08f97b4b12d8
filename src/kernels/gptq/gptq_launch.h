// Launchers of the GPTQ column-loop kernels (gptq_cuda.cu), called by gptq_cuda.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "qllm/quant.h"
#include "quant/int4_math.h"

namespace qllm::kernels {

// Device state of one matrix's column loop.
struct GptqLoopArgs {
  float* work = nullptr;                // [rows, cols] current weights, in quantization order
  const float* u = nullptr;             // [cols, cols] inverse factor, row-major upper
  const int64_t* order = nullptr;       // [cols] original column of each quantization step
  uint8_t* nibbles = nullptr;           // [rows, cols] by original flat index
  int4::GroupParams* params = nullptr;  // [groups] static ones given, dynamic ones written as reached
  float* err = nullptr;                 // [rows, block] scaled errors of the current batch
  int64_t rows = 0, cols = 0, block = 0;
  int64_t group_elems = 0, groups_per_row = 0;  // GroupLayout (groups_per_row 0: GLOBAL)
  int64_t dynamic_group = 0;                    // group size when groups are chosen as reached, else 0
  bool zero_point = false;
  bool bf16_scale = false;
  ScaleSearch search = ScaleSearch::None;
};

// Largest batch the batch kernel takes (its shared memory holds the batch's [block, block] factor).
inline constexpr int64_t kGptqMaxBlock = 128;

// Quantizes columns [i1, i2) of every row, one after another, spreading each error over the rest of the
// batch; writes nibbles, dynamic group parameters and the batch's errors.
void launch_gptq_batch(const GptqLoopArgs& args, int64_t i1, int64_t i2, cudaStream_t stream);
// work[:, i2:] -= err[:, 0:i2-i1] @ u[i1:i2, i2:], each weight updated term by term in row order.
void launch_gptq_update(const GptqLoopArgs& args, int64_t i1, int64_t i2, cudaStream_t stream);
// out[r][c] = c >= r ? (float)lower[c + r * n] : 0: cuSOLVER's column-major lower factor L as U = L^T.
void launch_gptq_factor_to_upper(const double* lower, float* out, int64_t n, cudaStream_t stream);

// GPTQ's calibration attention: each row of scores [heads, len, len] (head, query i) made the causal softmax
// over keys 0..i, the later keys' weights 0 (causal_softmax.cu).
void launch_causal_softmax(float* scores, int64_t heads, int64_t len, cudaStream_t stream);

}  // namespace qllm::kernels
