// RoPE + KV store: from the fused qkv projection T [tokens, (Hq + 2 Hkv) x D] (q heads, then k heads, then v
// heads, each D contiguous values), rotate q and k ("rotate half": pairs (x[j], x[j + D/2]) turn by
// angle = f32(position) x inv_freq[j]), write the rotated q to its own buffer T [tokens, Hq, D] (not in place:
// the attention kernels then read dense q rows), and store the rotated k and the raw v into one layer's
// paged pools [num_pages, Hkv, page_size, D] at slot_mapping[token] (tokens with slot -1 are not stored:
// padding rows of a CUDA-graph bucket).
//
// Numerics (the CPU reference below is the spec): cos and sin of the f32 angle are computed in double and
// rounded to f32 (the GPU uses double sincos, so both match to the last f32 bit barring a 1-ulp double
// difference), the rotation x1 * c - x2 * s, x2 * c + x1 * s in f32 without fused multiply-adds, the result
// rounded to T. v is copied bit for bit.
//
// This header has no CUDA types: the reference and validation compile in the CPU-only build. The CUDA entry
// point is launch_rope_kv() in attention_cuda.h.
#pragma once

#include <cstdint>

#include "qllm/dtype.h"

namespace qllm {

struct RopeKvParams {
  const void* qkv = nullptr;              // T [num_tokens, (num_q_heads + 2 num_kv_heads) x head_dim]
  void* q_out = nullptr;                  // T [num_tokens, num_q_heads, head_dim]; must not overlap qkv
  void* k_pool = nullptr;                 // T [num_pages, num_kv_heads, page_size, head_dim], this layer's
  void* v_pool = nullptr;                 // T, same shape
  const float* inv_freq = nullptr;        // f32 [head_dim / 2]
  const int32_t* positions = nullptr;     // [num_tokens]
  const int32_t* slot_mapping = nullptr;  // [num_tokens]: page_id x page_size + position % page_size, or -1
  DType dtype = DType::BF16;
  int64_t num_tokens = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int page_size = 0;
  int64_t num_pages = 0;
};

// Where the params will be used: the CUDA kernel (device pointers; bf16/f16, head_dim 64 or 128, 16-byte
// aligned buffers) or the CPU reference (host pointers; also f32, any even head_dim).
enum class KernelTarget { Cuda, Reference };

// Throws qllm::Error naming the field when the shapes or pointers do not fit `target`.
void validate_rope_kv(const RopeKvParams& p, KernelTarget target);

// The CPU reference on host pointers (dtype f32, f16 or bf16). Also checks every slot: a slot outside the
// pool is an error (the kernel skips it instead, so that bad device data never writes out of bounds).
void rope_kv_reference(const RopeKvParams& p);

}  // namespace qllm
