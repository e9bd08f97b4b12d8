// W4A16 GEMM on the GPU: Y[M, N] = X[M, K] @ W'[N, K]^T with X and Y in bf16 (or f16) and W' the INT4
// weights of a W4A16Weights (repacked offline, quant/w4a16_layout.h), fp32 accumulation.
//
// Kernels: "skinny" (mma.sync, any sm_80+ GPU; memory-bound small M, exact (q - z) * s weights with per-group
// scaling of fp32 partial sums); "tiled" (mma.sync, sm_80+; mid-sized M: 128-row x 32/64/128-token tiles
// through a cp.async pipeline); "wgmma" (Hopper sm_90a: TMA, a producer thread, weights dequantized by the
// consumer warpgroups into wgmma's register operand); and "dequant" (any GPU: dequantize to a 16-bit
// scratch, then cuBLAS: for large M the GEMM's compute dominates and cuBLAS does it best). Weights are
// rounded once to the activation dtype in all but the skinny kernel. Auto picks by M and by what the GPU
// supports (see plan()). Min-offset weights (GGUF Q4_1, w' = u * s + m) run on every kernel, wgmma in
// Q4_1's groups of 32 only (the plan gives other group sizes the other kernels).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <string_view>

#include "kernels/gemm/cublas_gemm.h"
#include "kernels/gemm/splitk_workspace.h"
#include "kernels/gemm/x_prologue.h"
#include "kernels/runtime/cuda_utils.h"
#include "quant/w4a16_layout.h"

namespace qllm {

namespace kernels {
struct W4A16KernelArgs;  // w4a16_launch.h
}  // namespace kernels

// The wgmma kernel's TMA maps of one weight, for each CTA row count (64, 128, 256): encoded once when the
// weight is uploaded (encoding costs microseconds of host time), kept with it.
struct W4A16WeightMaps {
  CUtensorMap units{}, scales{}, zeros{};
};

struct W4A16DeviceWeights {
  W4A16Layout layout;
  DeviceBuffer<uint8_t> qweight;
  DeviceBuffer<uint16_t> scales;
  // magic + z, or the minimums (layout.min_offset); empty when symmetric
  DeviceBuffer<uint16_t> zero_offsets;
  bool has_maps = false;    // maps are encoded where the wgmma kernel can run
  W4A16WeightMaps maps[3];  // by CTA rows: [0] 64, [1] 128, [2] 256

  static W4A16DeviceWeights upload(const W4A16Weights& weights);
  size_t bytes() const { return qweight.bytes() + scales.bytes() + zero_offsets.bytes(); }
  // Encodes `maps` (a no-op where the wgmma kernel cannot run); upload() calls it.
  void encode_maps();
  const W4A16WeightMaps& maps_for_rows(int rows_per_cta) const;
};

enum class W4A16Kernel { Auto, Skinny, Tiled, Wgmma, Dequant };
std::string_view w4a16_kernel_name(W4A16Kernel kernel);
W4A16Kernel parse_w4a16_kernel(std::string_view name);  // auto | skinny | tiled | wgmma | dequant

// The launch configuration run() uses for a given M (exposed for benchmarks and tests).
struct W4A16Plan {
  W4A16Kernel kernel = W4A16Kernel::Skinny;
  int tokens_per_cta = 8;
  int rows_per_cta = 128;
  int warps_k = 1;          // skinny: warps of a CTA splitting its K range
  int splits = 1;           // CTAs splitting K
  int steps_per_split = 0;  // 64-wide k steps per split
  int cluster_splits = 0;   // tiled: the splits (> 1) add up inside a thread-block cluster, not in memory
};

// Overrides of the automatic plan, for tuning experiments (0 keeps the automatic choice).
struct W4A16Tuning {
  int tokens_per_cta = 0;  // skinny 8, 16, 32; tiled 32, 64, 128; wgmma 64, 128, 256
  int rows_per_cta = 0;    // wgmma: 64 (with 128 tokens), else what the token tile implies
  int warps_k = 0;         // skinny 1, 2, 4, 8
  int splits = 0;
  int fused_prologue_up_to_tokens = 0;  // run_fused's bound on M (1..8); 0: the plan rule's
};

// Owns the split-K workspace, the dequant path's scratch (N x K 16-bit values of the largest weight reserved
// for) and a cuBLAS handle; one instance per stream (launches on one instance must not overlap).
// reserve() sizes the workspaces for every M up to a bound before any run(); run() then only enqueues work
// (no allocation, no synchronisation, no host reads of device data), so it can be captured in a CUDA graph.
class W4A16Gemm {
 public:
  W4A16Tuning tuning;

  W4A16Plan plan(int64_t m, const W4A16Layout& layout, W4A16Kernel kernel = W4A16Kernel::Auto) const;

  // Workspaces for every M in [1, max_m] on weights of `layout` (with Auto's plans, or `kernel`'s), and the
  // kernels those plans launch configured. Synchronous; call it before run() and outside graph capture.
  void reserve(const W4A16Layout& layout, int64_t max_m, W4A16Kernel kernel = W4A16Kernel::Auto);
  // Device bytes of the workspaces reserved so far.
  size_t workspace_bytes() const { return splitk_.bytes() + scratch_.bytes() + x_pad_.bytes(); }

  // y[m, n] = x[m, k] @ W'[n, k]^T (the argument order of every qllm GEMM: x, weights, y, shape, stream).
  // x: [m, layout.k] and y: [m, layout.n] (any N, any even K: the padding of the layout stays inside),
  // device pointers in the layout's activation dtype, 16-byte aligned. Only enqueues work on `stream`; a
  // plan outside what reserve() covered throws.
  void run(const void* x, const W4A16DeviceWeights& weights, void* y, int64_t m, cudaStream_t stream,
           W4A16Kernel kernel = W4A16Kernel::Auto);
  // y[m, n] = X @ W'^T where X[m, layout.k] is computed from `prologue` (x_prologue.h) inside the GEMM, if
  // the GEMM can: Auto's plan is the skinny kernel at 8 tokens per CTA, M within the bound (tuning, else
  // kernels::W4A16PlanRules), K a multiple of 8 (and for the norm at most 4096, not min-offset weights).
  // Returns false, having enqueued nothing, otherwise: the caller runs the elementwise kernel, then run().
  bool run_fused(const XPrologue& prologue, const W4A16DeviceWeights& weights, void* y, int64_t m,
                 cudaStream_t stream);

 private:
  // Points args at the split-K workspace where plan `p` needs it (checked against what reserve() sized).
  void attach_splitk(kernels::W4A16KernelArgs& args, const W4A16Plan& p, const W4A16Layout& layout);

  kernels::SplitKWorkspace splitk_;
  DeviceBuffer<uint16_t> scratch_;
  DeviceBuffer<uint16_t> x_pad_;  // X copied into rows of the padded K, where K % 8 != 0
  CublasGemm cublas_;
  // The wgmma kernel's map of X for the last X seen (host-only encoding; a captured launch keeps its copy).
  struct XMapKey {
    const void* base = nullptr;
    int64_t rows = 0, cols = 0;
    int box_rows = 0;
    bool operator==(const XMapKey&) const = default;
  };
  XMapKey x_map_key_;
  CUtensorMap x_map_{};
};

}  // namespace qllm
