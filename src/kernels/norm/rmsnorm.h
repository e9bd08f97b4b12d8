// RMSNorm (Hugging Face LlamaRMSNorm) on the GPU, plain and fused with the residual add between layers, and
// its CPU reference (rmsnorm_ref.cpp, the spec). For each token row x of `hidden` values:
//   inv_rms = f32(1 / sqrt(sum(x^2) / hidden + eps))   sum of squares and the division in double
//   out     = T(w * (x * inv_rms))                     two f32 multiplications, rounded once to T
// which is the CPU forward pass's cpu::rmsnorm with the result rounded to the activation type. The weight is
// f32 on the device: the checkpoint's 16-bit values converted once at load (exact).
// Fused form (between layers): residual (f32) += f32(delta) first, then out = rmsnorm(residual).
// Bound: memory. Per row: plain reads 2·hidden bytes and writes 2·hidden; fused reads 4·hidden (+2·hidden of
// delta) and writes 4·hidden + 2·hidden; the weight (4·hidden) stays in L2/L1. At decode (one row) the
// launch dominates: one CTA per row, one pass, values held in registers between the reduction and the store.
#pragma once

#include <cstdint>

#include "qllm/dtype.h"

struct CUstream_st;  // cudaStream_t without the CUDA headers (the reference builds without them)

namespace qllm {

// Pointers are device pointers for launch_rmsnorm and host pointers for rmsnorm_ref. Set `x` for the plain
// form, or `residual` for the fused form (exactly one of the two).
struct RmsNormParams {
  int64_t tokens = 0;
  int64_t hidden = 0;  // any size from 1 to 65536; 16-byte vectors when hidden % 8 == 0 and rows are aligned
  double eps = 1e-5;   // rms_norm_eps of the config
  DType dtype = DType::BF16;    // of x, delta and out: BF16 or F16
  const void* x = nullptr;      // T [tokens, hidden]: plain form
  float* residual = nullptr;    // f32 [tokens, hidden], updated in place: fused form
  const void* delta = nullptr;  // T [tokens, hidden] added to the residual first; null: no add (first layer)
  const float* weight = nullptr;  // f32 [hidden]
  void* out = nullptr;            // T [tokens, hidden]; may not overlap the inputs
};

// Validates shapes and pointers (qllm::Error naming the problem), then enqueues the kernel on `stream`.
void launch_rmsnorm(const RmsNormParams& params, CUstream_st* stream);

// CPU reference on host pointers (16-bit data as raw bf16/f16 bits).
void rmsnorm_ref(const RmsNormParams& params);

namespace detail {
// Enqueues the kernel for validated parameters (rmsnorm.cu).
void enqueue_rmsnorm(const RmsNormParams& params, CUstream_st* stream);
}  // namespace detail

}  // namespace qllm
