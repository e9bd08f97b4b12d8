// QuantLinear: the linear layer of the GPU engine in any weight format (QuantMode, quant/quant_mode.h):
// y[M, N] = x[M, K] @ W'[N, K]^T with x and y in the activation dtype (bf16 or f16), fp32 accumulation, where
// W' is the weight exactly as the CPU reference (model/cpu_linear.h) computes with it:
//   dense bf16/f16: cuBLASLt; int4 (every scheme): the W4A16 kernels (the plan picks skinny, tiled, wgmma or
//   dequant + cuBLAS by M; wgmma for min offset only in groups of 32); int8: LLM.int8() with the mode's outlier threshold.
// The weights are quantized on the GPU at construction (the 16-bit source is staged on the device, quantized,
// and the staging freed), so peak device memory stays near the quantized size plus one layer's staging.
//
// The workspaces belong to a GemmExecutor, one per stream (one per engine context), shared by every
// QuantLinear that runs on that stream; the layer itself is immutable after construction, so one model's
// layers serve several contexts. reserve(executor, max_tokens) sizes the workspaces up front; forward() then
// only enqueues work (no allocation, no synchronisation, no host reads of device data) and can be captured
// in a CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <optional>
#include <span>

#include "kernels/gemm/cublas_gemm.h"
#include "kernels/gemm/int8.h"
#include "kernels/gemm/w4a16.h"
#include "kernels/runtime/cuda_utils.h"
#include "qllm/dtype.h"
#include "quant/quant_mode.h"

namespace qllm {

// The GEMM state of one stream: cuBLASLt handle and workspace, W4A16 and int8 workspaces, and the padding
// copies of int8 layers whose N or K is not a multiple of 64. The QuantLinears that use it must not run
// concurrently (one stream, or serialised streams).
struct GemmExecutor {
  CublasGemm cublas;
  W4A16Gemm w4a16;
  Int8Gemm int8;
  int64_t reserved_tokens = 0;   // the most rows reserve() has sized the workspaces for
  DeviceBuffer<uint16_t> x_pad;  // int8: X in rows of the padded K (zeros past K)
  DeviceBuffer<uint16_t> y_pad;  // int8: Y in rows of the padded N, copied out to [m, N]

  size_t workspace_bytes() const {
    return w4a16.workspace_bytes() + int8.workspace_bytes() + x_pad.bytes() + y_pad.bytes();
  }
};

// A host weight: row-major [rows, cols] (rows = N, output features) of bf16, f16 or f32 elements, e.g. a
// model/llama_weights.h WeightMatrix; a fused projection is its parts' rows concatenated.
struct HostWeight {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  // A fused projection's parts (their row counts, summing to `rows`): int4 GLOBAL takes one scale per part,
  // as for the separate tensors of the checkpoint. Empty: one part.
  std::span<const int64_t> parts = {};
};

class QuantLinear {
 public:
  // Quantizes `weight` on the GPU into `mode`'s format. `activation`: bf16 or f16 (dense modes need their
  // dtype to be the activation dtype). f32 weights are rounded to the activation dtype first, 16-bit ones
  // are taken as they are (as model/cpu_linear.h does). Synchronous (load time). Any N and K (INT4: K even);
  // shapes that are not whole kernel tiles are zero-padded inside (the W4A16 layout pads itself; int8 weights
  // are stored padded to multiples of 64 and forward() copies through the executor's padding workspaces),
  // invisible to the caller.
  QuantLinear(const HostWeight& weight, const QuantMode& mode, DType activation, cudaStream_t stream);
  // Pre-quantized INT4 (a quantized checkpoint): uploaded and repacked into the W4A16 layout exactly as
  // stored, the same bits as quantizing at load gives for the same Int4Matrix. The mode is INT4 in the
  // matrix's scheme, min offset (GGUF Q4_1's u * s + m) included. Refused with qllm::Error: scales in another
  // dtype than `activation` (the kernels read scales and minimums in the activation dtype; converting would
  // round them), a group size that is not a multiple of 16, an odd K, or arrays that do not fit the shape.
  QuantLinear(const Int4Matrix& weight, DType activation);

  int64_t out_features() const { return n_; }  // N
  int64_t in_features() const { return k_; }   // K
  const QuantMode& mode() const { return mode_; }
  DType activation() const { return activation_; }
  // Device bytes of the stored weight (values, scales, zero points), padding included.
  uint64_t weight_bytes() const;

  // Sizes the executor's workspaces for every M up to `max_tokens` on this layer and sets the attributes of
  // the kernels it will launch. Synchronous; call before forward() and outside graph capture. (cuBLASLt
  // plans are made on a shape's first use: host-only descriptor work, legal during capture.)
  void reserve(GemmExecutor& executor, int64_t max_tokens) const;

  // y[m, N] = x[m, K] @ W'^T; x and y device arrays of the activation dtype, 16-byte aligned. Only enqueues
  // work on `stream` with `executor`'s workspaces; m above what reserve() covered throws.
  void forward(GemmExecutor& executor, const void* x, void* y, int64_t m, cudaStream_t stream) const;

  // y[m, N] = X @ W'^T with X computed inside the GEMM from `prologue` (x_prologue.h: the RMSNorm or SwiGLU
  // before this layer, folded into its launch) where the layer's kernel can do that (INT4 at decode sizes:
  // W4A16Gemm::run_fused); returns false, having enqueued nothing, elsewhere: the caller then runs the
  // elementwise kernel and forward(). Results are those of the unfused pair.
  bool forward_fused(GemmExecutor& executor, const XPrologue& prologue, void* y, int64_t m,
                     cudaStream_t stream) const;

  // The stored weight, for kernels that read it directly (the embedding gather of a tied table):
  // exactly one of these is non-null, according to mode().kind. The int8 weight is [padded N, padded K]
  // (multiples of 64, zeros past N and K): its rows are int8()->k apart.
  const void* dense() const { return dense_.size() ? dense_.data() : nullptr; }  // [N, K] of dense_dtype
  const W4A16DeviceWeights* int4() const { return int4_ ? &*int4_ : nullptr; }   // quant/w4a16_layout.h
  const Int8DeviceWeights* int8() const { return int8_ ? &*int8_ : nullptr; }    // int8 rows + row absmax

 private:
  QuantMode mode_;
  DType activation_ = DType::BF16;
  int64_t n_ = 0, k_ = 0;
  int64_t int8_n_ = 0, int8_k_ = 0;  // int8: the stored (padded) shape
  DeviceBuffer<uint16_t> dense_;
  std::optional<W4A16DeviceWeights> int4_;
  std::optional<Int8DeviceWeights> int8_;
};

}  // namespace qllm
