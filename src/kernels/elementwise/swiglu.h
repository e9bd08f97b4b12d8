// SwiGLU on the GPU and its CPU reference (swiglu_ref.cpp, the spec): from the fused gate_up projection
// T [tokens, 2·I] (gate in columns [0, I), up in [I, 2I)), out T [tokens, I] = T(silu(g) · u) with
// silu(g) = g / (1 + exp(-g)), every step one f32 operation (as the CPU forward pass's cpu::swiglu).
// Bound: memory, 6·I bytes per token (reads 4·I, writes 2·I); one thread per 8 outputs, 16-byte vectors.
#pragma once

#include <cstdint>

#include "qllm/dtype.h"

struct CUstream_st;  // cudaStream_t without the CUDA headers (the reference builds without them)

namespace qllm {

// Device pointers for launch_swiglu, host pointers (16-bit data as raw bits) for swiglu_ref.
struct SwigluParams {
  int64_t tokens = 0;
  int64_t intermediate = 0;       // I; 16-byte vectors when I % 8 == 0 and the pointers are aligned
  DType dtype = DType::BF16;      // BF16 or F16
  const void* gate_up = nullptr;  // T [tokens, 2·I]
  void* out = nullptr;            // T [tokens, I]
};

void launch_swiglu(const SwigluParams& params, CUstream_st* stream);
void swiglu_ref(const SwigluParams& params);

namespace detail {
void enqueue_swiglu(const SwigluParams& params, CUstream_st* stream);  // swiglu.cu, validated parameters
}  // namespace detail

}  // namespace qllm
