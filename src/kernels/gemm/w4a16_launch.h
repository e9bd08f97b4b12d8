// Internal interface between the W4A16 GEMM kernels (w4a16_*.cu) and their host code (w4a16.cpp): an
// argument block and raw launchers that trust validated arguments. Every launcher is a template on the
// activation type (Bf16 or F16, common/dispatch.h), instantiated for both in its .cu file.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/gemm/x_prologue.h"

namespace qllm::kernels {

// n and k are the repacked weight's padded sizes (multiples of 64, W4A16Layout::padded_n/padded_k): every
// weight index uses them. n_out and x_cols are what the caller's Y and X hold: outputs of rows past n_out are
// never written, and activations of columns past x_cols read as zeros (the padding weights are zeros too,
// but 0 * NaN is not 0: whatever follows a row of X in memory must not reach the product).
struct W4A16KernelArgs {
  const void* x = nullptr;           // [M, x_cols] bf16 or f16, row-major, 16-byte aligned rows
  const void* qweight = nullptr;     // repacked units [n/16][k/64] x 512 bytes
  const uint32_t* scales = nullptr;  // (s[g], s[g + 8]) pairs [n/16][groups][8]
  // Same order: (magic + z) pairs with zero points, (m[g], m[g + 8]) minimum pairs with min_offset; nullptr
  // when symmetric.
  const uint32_t* zero_offsets = nullptr;
  void* y = nullptr;                 // [M, n_out] bf16 or f16
  float* partials = nullptr;         // split-K partial sums [splits][M][n] (splits > 1)
  unsigned int* counters = nullptr;  // split-K arrival counters per output tile, zero between launches
  int m = 0, n = 0, k = 0;
  int n_out = 0;            // Y's row length, the real N (<= n)
  int x_cols = 0;           // X's row length (<= k, a multiple of 8): the real K, or k when X was padded
  int group_steps = 0;      // k16 steps per scale group
  int groups = 0;           // scale groups per row
  int splits = 1;           // split-K factor
  int steps_per_split = 0;  // k64 steps per split
  int cluster_splits = 0;   // tiled kernel: > 1 when the splits form a cluster and reduce in shared memory
  // w' = u * s + m (GGUF Q4_1): z = 0, zero_offsets holds the minimums.
  bool min_offset = false;
  // Host only: the launcher sets its kernel's attributes (once per kernel) and launches nothing, so that
  // reserve() does what a first launch would otherwise do inside a captured region.
  bool configure_only = false;
};

// Skinny path (mma.sync, sm_80+): CTAs of 8 warps; warps_k (1, 2, 4, 8) of them split the CTA's K range, so
// a CTA covers 16 * 8 / warps_k weight rows and 8 * tok_tiles (1, 2, 4) tokens; grid (rows, splits, tokens).
// The CTA keeps its [tokens x steps_per_split * 64] activation slice in shared memory.
constexpr int kSkinnyMaxActivationBytes = 72 * 1024;
constexpr int kSkinnyThreads = 256;
// A fused RMSNorm (x_prologue.h) holds up to this many chunks of 8 values of a row per thread: K up to
// 8 * 2 * 256 = 4096.
constexpr int kPrologueMaxChunksPerThread = 2;
// `prologue`: at 8 tokens per CTA (tok_tiles 1), X computed from these inputs instead of read (args.x is then
// unused; args.x_cols is K, a multiple of 8). A kernel parameter of its own rather than a field of the
// arguments: a larger W4A16KernelArgs changed how every W4A16 kernel reads its parameters, and slowed them all
// (RESULTS.md §13).
template <typename T>
void launch_w4a16_skinny(const W4A16KernelArgs& args, int tok_tiles, int warps_k, cudaStream_t stream,
                         const XPrologue& prologue = {});

// Tiled path (mma.sync, sm_80+): CTAs of 8 warps on a 128-row x tokens_per_cta (32, 64, 128) tile of Y,
// grid (token blocks, row blocks, splits); see w4a16_tiled.cu. With args.cluster_splits set (at most
// kTiledMaxClusterSplits, where w4a16_tiled_cluster_reduction_available()) the kernel finishes its split-K
// itself; otherwise splits > 1 leave partial sums for launch_splitk_reduce.
constexpr int kTiledMaxClusterSplits = 8;  // the portable cluster size
bool w4a16_tiled_cluster_reduction_available();
template <typename T>
void launch_w4a16_tiled(const W4A16KernelArgs& args, int tokens_per_cta, cudaStream_t stream);

// Dequantizes the repacked weights into `out` [n_out, x_cols] (bf16/f16), for the dequant-then-cuBLAS path.
template <typename T>
void launch_w4a16_dequantize(const W4A16KernelArgs& args, void* out, cudaStream_t stream);

// Sums split-K partials [splits][M][N] in split order into Y (a separate, fully parallel pass).
template <typename T>
void launch_splitk_reduce(const W4A16KernelArgs& args, cudaStream_t stream);

// wgmma path (sm_90a only; sm90a_kernels_available() says whether it runs): see w4a16_wgmma.cu.
// tokens_per_cta 64 or 128 (256 weight rows per CTA) or 256 (128 rows), or 128 tokens on 64 rows (the
// consumer warpgroups split the tokens). The tensor maps: X [M, K] in
// [tokens_per_cta x 64] boxes (make_tensor_map_2d); the units, scales and zero points as 4-byte words,
// [N / 16] rows of K / 64 * 128, groups * 8, groups * 8 words, in boxes of rows_per_cta / 16 rows by 128,
// 8 * scale_groups, 8 * scale_groups words (make_word_tensor_map_2d; zeros = scales when symmetric).
struct W4A16WgmmaMaps {
  CUtensorMap x, units, scales, zeros;
};
// Scale groups per 64-wide k step: 4 (groups of 16), 2 (32), 1 (multiples of 64); 0: unsupported.
int w4a16_wgmma_scale_groups(int group_steps);
// Min-offset weights (GGUF Q4_1) run on the wgmma kernel in groups of 32 (group_steps 2) only: Q4_1's blocks,
// the one source of the format, so no other variant is compiled.
bool w4a16_wgmma_min_offset_supported(int group_steps);
int w4a16_wgmma_rows_per_cta(int tokens_per_cta);  // the wide tiles' rows for a token tile
bool w4a16_wgmma_tile_supported(int tokens_per_cta, int rows_per_cta);
template <typename T>
void launch_w4a16_wgmma(const W4A16KernelArgs& args, const W4A16WgmmaMaps& maps, int tokens_per_cta,
                        int rows_per_cta, cudaStream_t stream);

}  // namespace qllm::kernels
