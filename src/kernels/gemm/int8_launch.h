// Internal interface between the LLM.int8() kernels (int8_prep.cu, gemm_int8_skinny.cu, gemm_int8_wide.cu)
// and their host code (gemm_int8.cpp): argument blocks and raw launchers that trust validated arguments.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qllm::kernels {

// Device-side results of the activation prep, copied to the host only when asked (Int8Gemm::fetch_status).
// All bytes 0xff is the cleared state.
struct Int8PrepStatus {
  unsigned long long
      first_nonfinite;    // smallest flat index of a NaN/Inf activation since the status was cleared, or ~0
  int outlier_count;      // outlier columns of the current call (the GEMM reads it)
  int max_outlier_count;  // the most outlier columns of any call since the status was cleared (-1: none)
};

// Activation prep: X [m, k] (bf16 or f16) -> int8 rows with outlier columns removed.
struct Int8PrepArgs {
  const void* x = nullptr;
  bool bf16 = true;
  int m = 0, k = 0;
  float threshold = 0;  // <= 0 or inf: no outliers
  // The outlier column bitmap, zero on entry: the GEMM after the prep clears it (Int8GemmArgs::outlier_bits),
  // so all state stays on the device and a captured graph replays correctly.
  uint32_t* outlier_bits = nullptr;        // [k / 32]
  int8_t* xq = nullptr;                    // [m, k]
  float* x_absmax = nullptr;               // [m]
  int* outlier_cols = nullptr;             // [k] column of each outlier, ascending (any count up to k)
  uint16_t* x_outliers = nullptr;  // [m, k] the outlier columns' activations (16-bit), first `count` of a row
  Int8PrepStatus* status = nullptr;
  bool configure_only = false;  // host only: query the launch configuration once, launch nothing
};
// Outlier bitmap over all rows (atomics), then a CTA per row (rows up to 16384 values held in registers).
void launch_int8_prep(const Int8PrepArgs& args, cudaStream_t stream);
// Offline weight quantization: rows of a [m, k] matrix, no outliers (the same kernel as the activations').
void launch_int8_quantize_rows(const Int8PrepArgs& args, cudaStream_t stream);

// The GEMM proper: Y[m, n] = (xq @ wq^T) * x_absmax[m] * w_absmax[n] / 127^2 + outlier columns in 16 bits.
struct Int8GemmArgs {
  const int8_t* xq = nullptr;       // [m, k]
  const float* x_absmax = nullptr;  // [m]
  const int8_t* w = nullptr;        // [n, k]
  const float* w_absmax = nullptr;  // [n]
  const int* outlier_cols = nullptr;
  const uint16_t* x_outliers = nullptr;
  Int8PrepStatus* status = nullptr;  // outlier_count, written by the prep
  // The prep's outlier bitmap (null without outliers): the first CTA zeroes it once the prep has finished,
  // for the next call. Clearing it here rather than in the prep spares the prep's CTAs an atomic count of
  // readers, whose round trip showed at decode (RESULTS.md §13).
  uint32_t* outlier_bits = nullptr;
  int bitmap_words = 0;
  void* y = nullptr;                 // [m, n] bf16 or f16
  bool bf16 = true;
  float* partials = nullptr;         // skinny split-K: scaled partial sums [splits][m][n]
  unsigned int* counters = nullptr;  // skinny split-K arrival counters, zero between launches
  int m = 0, n = 0, k = 0;
  int splits = 1;
  int steps_per_split = 0;  // 64-wide k steps (skinny) or 128-wide k blocks (wide) per split
  // Host only: the launcher sets its kernel's attributes (once per kernel) and launches nothing, so that
  // Int8Gemm::reserve() does what a first launch would otherwise do inside a captured region.
  bool configure_only = false;
};

// Skinny path (mma.sync m16n8k32 s8, sm_80+): as the W4A16 skinny kernel (8 warps, warps_k of them splitting
// K, 8 * tok_tiles tokens), reading the int8 weights row-major.
constexpr int kInt8SkinnyMaxActivationBytes = 96 * 1024;
void launch_int8_skinny(const Int8GemmArgs& args, int tok_tiles, int warps_k, cudaStream_t stream);

// Wide path (TMA + wgmma s8, sm_90a; sm90a_kernels_available() says whether it runs): 128 tokens x block_n
// (64, 128 or 256) weight rows per CTA, ctas_per_sm (1 or 2; block_n 256 takes 1, 64 takes 2) resident per
// SM; splits (<= kInt8WideMaxSplits) CTAs of a cluster share a tile's K and reduce in shared memory.
constexpr int kInt8WideMaxSplits = 8;  // the portable thread-block cluster size
void launch_int8_wide(const Int8GemmArgs& args, const CUtensorMap& x_map, const CUtensorMap& w_map,
                      int block_n, int ctas_per_sm, cudaStream_t stream);

}  // namespace qllm::kernels
