// Index math shared by the attention kernels (device) and the CPU tests that emulate them (host): the
// shared-memory swizzle of K/V/Q tiles, the rows and 16-byte chunks each lane hands to ldmatrix, the
// coordinates of an mma.sync accumulator element, the GQA row packing of a prefill tile, and how a decode
// split divides a sequence's keys. Plain C++ (no CUDA headers): tests/cpu/test_attention_ref.cpp checks it
// against an emulation of ldmatrix and mma.sync m16n8k16 written from the PTX ISA's fragment tables.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define QLLM_ATTENTION_HD __host__ __device__ __forceinline__
#else
#define QLLM_ATTENTION_HD inline
#endif

namespace qllm::attention {

// Prefill tiles: 64 query rows x 64 keys per step, 4 warps of 16 rows each.
inline constexpr int kTileRows = 64;
inline constexpr int kTileKeys = 64;
inline constexpr int kPrefillWarps = 4;
// Decode splits cover whole multiples of this many keys.
inline constexpr int kDecodeGranule = 64;

// A row and a 16-byte chunk (8 elements) of a [rows, head_dim] tile.
struct TileCoord {
  int row;
  int chunk;
};

// Element offset of chunk `chunk` of row `row` in a shared-memory tile of rows of `head_dim` elements
// (head_dim a multiple of 64): the chunk index is XORed with row % 8, so the 8 rows one ldmatrix phase reads
// (8 consecutive rows, one logical chunk) fall in 8 different 16-byte bank groups.
QLLM_ATTENTION_HD int swizzled_offset(int row, int chunk, int head_dim) {
  return row * head_dim + ((chunk ^ (row & 7)) << 3);
}

// ldmatrix.x4 sources (each lane names one 8-element row of one of the four 8x8 matrices: lanes 0-7 matrix 0,
// 8-15 matrix 1, 16-23 matrix 2, 24-31 matrix 3).
//
// Q (A operand of S = Q K^T, row-major 16x16 at rows warp*16.., k = head_dim chunks 2ks, 2ks+1): matrices
// (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = registers a0..a3.
QLLM_ATTENTION_HD TileCoord q_fragment_source(int lane, int warp, int k_step) {
  return {warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, 2 * k_step + (lane >> 4)};
}
// K (B operand, "col" layout = K rows [key][d]): keys 16kp..16kp+15 = n-tiles 2kp and 2kp+1. Matrices
// (keys 0-7, k 0-7), (keys 0-7, k 8-15), (keys 8-15, k 0-7), (keys 8-15, k 8-15) = b0, b1 of n-tile 2kp and
// b0, b1 of n-tile 2kp+1.
QLLM_ATTENTION_HD TileCoord k_fragment_source(int lane, int key_pair, int k_step) {
  return {key_pair * 16 + (lane & 7) + (lane >> 4) * 8, 2 * k_step + ((lane >> 3) & 1)};
}
// V (B operand of O = P V, stored [key][d] = k-major, loaded with .trans): keys 16ks..16ks+15 are the k16
// step, d chunks 2dp, 2dp+1 are two n-tiles. Matrices (keys 0-7, d 0-7), (keys 8-15, d 0-7), (keys 0-7,
// d 8-15), (keys 8-15, d 8-15) = b0, b1 of d-tile 2dp and b0, b1 of d-tile 2dp+1.
QLLM_ATTENTION_HD TileCoord v_fragment_source(int lane, int key_step, int d_pair) {
  return {key_step * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, 2 * d_pair + (lane >> 4)};
}

// Accumulator element i (0..3) of an m16n8 tile held by `lane`: row g or g + 8, column 2t or 2t + 1.
QLLM_ATTENTION_HD int accumulator_row(int lane, int i) {
  return (lane >> 2) + ((i >> 1) << 3);
}
QLLM_ATTENTION_HD int accumulator_col(int lane, int i) {
  return ((lane & 3) << 1) + (i & 1);
}

// P as the A operand of O = P V (flash-attention's register reuse): register `reg` (0..3) of k16 step kk
// packs elements `p_fragment_element(reg, 0|1)` of the S accumulator of n-tile 2kk + p_fragment_tile(reg):
// a0 = rows g, keys 2t.. of n-tile 2kk; a1 = rows g + 8 of it; a2, a3 the same of n-tile 2kk + 1.
QLLM_ATTENTION_HD int p_fragment_tile(int reg) {
  return reg >> 1;
}
QLLM_ATTENTION_HD int p_fragment_element(int reg, int e) {
  return ((reg & 1) << 1) + e;
}

// GQA row packing of a prefill tile: row r of a sequence's q_len x group rows is query r / group of q head
// kv_head * group + r % group, so the group's heads share each K/V tile.
QLLM_ATTENTION_HD int packed_row_query(int row, int group) {
  return row / group;
}
QLLM_ATTENTION_HD int packed_row_head(int row, int group, int kv_head) {
  return kv_head * group + row % group;
}

// Decode splits: `splits` CTAs share a sequence's kv_len keys in chunks of a multiple of kDecodeGranule keys;
// the chunk follows the real length (read on the device), so a grid sized for a long bound still spreads a
// short sequence over few CTAs and every CTA past the last chunk has no work.
QLLM_ATTENTION_HD int64_t decode_chunk_keys(int64_t kv_len, int splits) {
  const int64_t per_split = (kv_len + splits - 1) / splits;
  const int64_t chunk = (per_split + kDecodeGranule - 1) / kDecodeGranule * kDecodeGranule;
  return chunk > 0 ? chunk : kDecodeGranule;
}
// Splits that hold keys (0 for an empty sequence); never more than `splits`.
QLLM_ATTENTION_HD int decode_splits_used(int64_t kv_len, int splits) {
  if (kv_len <= 0) return 0;
  const int64_t chunk = decode_chunk_keys(kv_len, splits);
  return static_cast<int>((kv_len + chunk - 1) / chunk);
}
// Keys [begin, end) of split `split` (empty past the last used split).
struct KeyRange {
  int64_t begin;
  int64_t end;
};
QLLM_ATTENTION_HD KeyRange decode_split_keys(int64_t kv_len, int splits, int split) {
  const int64_t chunk = decode_chunk_keys(kv_len, splits);
  int64_t begin = split * chunk;
  if (begin > kv_len) begin = kv_len;
  int64_t end = begin + chunk;
  if (end > kv_len) end = kv_len;
  return {begin, end};
}

}  // namespace qllm::attention
