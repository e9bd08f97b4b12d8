// W4A16 GEMM on the GPU: Y[M, N] = X[M, K] @ W'[N, K]^T with X and Y in bf16 (or f16) and W' the INT4
// weights of a W4A16Weights (repacked offline, quant/w4a16_layout.h), fp32 accumulation.
//
// Kernels: "skinny" (mma.sync, any sm_80+ GPU; memory-bound small M, exact (q - z) * s weights with per-group
// scaling of fp32 partial sums); "tiled" (mma.sync, sm_80+; mid-sized M: 128-row x 32/64/128-token tiles
// through a cp.async pipeline); "wgmma" (Hopper sm_90a: TMA, a producer thread, weights dequantized by the
// consumer warpgroups into wgmma's register operand); and "dequant" (any GPU: dequantize to a 16-bit
// scratch, then cuBLAS: for large M the GEMM's compute dominates and cuBLAS does it best). Weights are
// rounded once to the activation dtype in all but the skinny kernel. Auto picks by M and by what the GPU
// supports (see plan()).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <string_view>

#include "kernels/gemm/cublas_gemm.h"
#include "kernels/gemm/splitk_workspace.h"
#include "kernels/runtime/cuda_utils.h"
#include "quant/w4a16_layout.h"

namespace qllm {

struct W4A16DeviceWeights {
  W4A16Layout layout;
  DeviceBuffer<uint8_t> qweight;
  DeviceBuffer<uint16_t> scales;
  DeviceBuffer<uint16_t> zero_offsets;  // empty when symmetric

  static W4A16DeviceWeights upload(const W4A16Weights& weights);
  size_t bytes() const { return qweight.bytes() + scales.bytes() + zero_offsets.bytes(); }
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
};

// Owns the split-K workspace and the dequant path's scratch (N x K 16-bit values of the largest weight seen)
// and cuBLAS handle; one instance per stream (launches on one instance must not overlap).
class W4A16Gemm {
 public:
  W4A16Tuning tuning;

  W4A16Plan plan(int64_t m, const W4A16Layout& layout, W4A16Kernel kernel = W4A16Kernel::Auto) const;

  // x: [m, k] and y: [m, layout.n], device pointers in the layout's activation dtype, 16-byte aligned.
  // Only enqueues work on `stream`.
  void run(const void* x, int64_t m, int64_t k, const W4A16DeviceWeights& weights, void* y,
           cudaStream_t stream = nullptr, W4A16Kernel kernel = W4A16Kernel::Auto);

 private:
  kernels::SplitKWorkspace splitk_;
  DeviceBuffer<uint16_t> scratch_;
  CublasGemm cublas_;
  // The wgmma kernel's tensor maps, for the last X and weights seen (encoding one costs microseconds of host
  // time).
  struct XMapKey {
    const void* base = nullptr;
    int64_t rows = 0, cols = 0;
    int box_rows = 0;
    bool operator==(const XMapKey&) const = default;
  };
  struct WeightMapKey {
    const void *units = nullptr, *scales = nullptr, *zeros = nullptr;
    int64_t n = 0, k = 0, group_k = 0;
    int box_rows = 0, scale_groups = 0;
    bool operator==(const WeightMapKey&) const = default;
  };
  XMapKey x_map_key_;
  WeightMapKey weight_map_key_;
  CUtensorMap x_map_{}, unit_map_{}, scale_map_{}, zero_map_{};
};

}  // namespace qllm
