// W4A16 GEMM weights, repacked offline into the order the kernels read (docs/FORMATS.md, "W4A16 repacked
// layout"), and the CPU reference GEMM that reads those same bytes (w4a16_ref.cpp, the spec).
//
// The GEMM is Y[M, N] = X[M, K] @ W'[N, K]^T, computed as Y^T = W' X^T so that the weights are the MMA's
// A operand: one 16-byte load per thread is its m16n8k16 (and wgmma m64nNk16) A fragment for four k16 steps.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "qllm/dtype.h"
#include "qllm/quant.h"

namespace qllm {

constexpr int64_t kW4A16TileN = 16;       // weight rows per repacked unit (one MMA A tile)
constexpr int64_t kW4A16TileK = 64;       // weight columns per repacked unit (four k16 MMA steps)
constexpr int64_t kW4A16UnitBytes = 512;  // 16 x 64 nibbles: 32 threads x 16 bytes
constexpr int64_t kW4A16RowAlign = 64;    // rows are padded to this: every kernel's row tiles are whole

// The repacked matrix is the weight zero-padded to whole units: padded_n() rows (N rounded up to 64, the
// kernels' row tiles) by padded_k() columns (K rounded up to 64, one k step). Padding weights are exact zeros
// (nibble = the group's zero point, scale 0 in groups of padding alone; min offset: scale and minimum 0 in
// padding rows and groups, but a real partial group's padding columns read as its minimum m), and the kernels
// never write the outputs of padding rows nor read activations past K (those read as zeros), so the padding
// is invisible to the caller.
struct W4A16Layout {
  int64_t n = 0;        // output features (rows of W)
  int64_t k = 0;        // input features
  int64_t group_k = 0;  // weights of a row sharing one scale: g for GROUPWISE, padded_k() for ROWWISE/GLOBAL
  bool zero_point = false;
  // GGUF Q4_1's w' = u * s + m: zero_offsets holds the minimums m (z = 0); never with zero_point.
  bool min_offset = false;
  DType activation = DType::BF16;  // X, Y and the stored scales: bf16 or f16

  int64_t padded_n() const { return (n + kW4A16RowAlign - 1) / kW4A16RowAlign * kW4A16RowAlign; }
  int64_t padded_k() const { return (k + kW4A16TileK - 1) / kW4A16TileK * kW4A16TileK; }
  // Stored groups per row: ceil(padded_k / group_k), i.e. the real ceil(K / g) (the last one partial when g
  // does not divide K) plus any group lying wholly in the padding columns (scale 0), so that the kernels'
  // group index k / group_k is valid for every k step they walk.
  int64_t groups_per_row() const { return (padded_k() + group_k - 1) / group_k; }
  // Groups of a row that hold real columns: ceil(K / g).
  int64_t real_groups_per_row() const { return (k + group_k - 1) / group_k; }
};

// Repacked weights (host copy). Sizes: qweight padded_n * padded_k / 2 bytes, scales and zero_offsets
// padded_n * groups_per_row values.
struct W4A16Weights {
  W4A16Layout layout;
  std::vector<uint8_t> qweight;  // units [padded_n/16][padded_k/64], 512 bytes each, in MMA fragment order
  std::vector<uint16_t> scales;  // [N/16][groups][8][2]: (s[row g], s[row g + 8]) for g = 0..7
  // Same order: the activation-dtype value (magic + z) with a zero point, the minimum m (raw activation-dtype
  // bits) with a min offset; empty if symmetric.
  std::vector<uint16_t> zero_offsets;

  // Where weight (row, col) lives (padding included): byte index into qweight and the nibble (0 = low).
  static void locate(const W4A16Layout& layout, int64_t row, int64_t col, int64_t& byte, int& shift);
  uint8_t nibble(int64_t row, int64_t col) const;
  float scale(int64_t row, int64_t col) const;  // of the group holding (row, col), as a float
  int zero(int64_t row, int64_t col) const;     // 8 when symmetric, 0 with a min offset
  float min(int64_t row, int64_t col) const;    // the group's minimum m with a min offset, else 0
};

// Checks what the kernels support (K even, a group size that is a multiple of 16; any N and K otherwise, the
// layout pads them; symmetric, zero-point and min-offset schemes); throws qllm::Error naming the shape
// otherwise.
W4A16Layout w4a16_layout_for(const Int4Matrix& matrix, DType activation);

// Offline repack from the canonical INT4 layout. Scales are converted to the activation dtype (exact when
// the matrix was quantized with a matching --scale-dtype; otherwise rounded once, to nearest even).
W4A16Weights repack_w4a16(const Int4Matrix& matrix, DType activation);

// Back to the canonical layout [n, k] without the padding (scales and minimums in the activation dtype):
// repack then unpack is the identity on nibbles, zero points and minimums, and on scales when the dtypes
// match.
Int4Matrix unpack_w4a16(const W4A16Weights& weights);

// How the reference treats the dequantized weights (the kernels differ, and each is tested against its own):
enum class W4A16Precision {
  Exact,           // w' = (q - z) * s (min offset: q * s + m) in exact arithmetic (scales, and minimums times
                   // the activations' group sums, applied to fp32 partial sums per group)
  RoundedWeights,  // w' rounded once to the activation dtype before the product (tensor-core operand); min
                   // offset: q * s + m rounded to f32 first (ggml's value), then to the activation dtype
};

// Dequantized weights [N, K] read from the repacked bytes, in the given precision.
std::vector<double> dequantize_w4a16_ref(const W4A16Weights& w, W4A16Precision precision);

// CPU reference: one output element Y[m, n] in double precision from the repacked bytes. `x` holds the
// activation values [M, K] row-major (already exact values of bf16/f16 numbers).
double gemm_w4a16_ref_element(std::span<const float> x, const W4A16Weights& w, int64_t m, int64_t n,
                              W4A16Precision precision);

// CPU reference: the whole Y [M, N] (float), parallel over rows. For small shapes (it dequantizes all of W).
std::vector<float> gemm_w4a16_ref(std::span<const float> x, int64_t m, const W4A16Weights& w,
                                  W4A16Precision precision);

}  // namespace qllm
