// ggml's quantization blocks (the tensor types of GGUF files): byte layouts and dequantization computing
// exactly what ggml's reference `dequantize_row_*` (ggml-quants.c) computes, float operation for float
// operation, so results are bit-identical. Layouts and formulas are documented in docs/FORMATS.md
// ("GGUF / ggml blocks"). Written from that description: ggml itself is not a dependency.
//
// All fields are little-endian; fp16 fields are raw IEEE binary16 bits. Blocks are copied out of the file
// bytes (memcpy) before use, so they need no alignment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/gguf.h"
#include "qllm/quant.h"

namespace qllm {

inline constexpr int kGgmlBlock = 32;        // elements per block of the Q4_0 .. Q8_0 types
inline constexpr int kGgmlSuperBlock = 256;  // elements per super-block of the K-quants (QK_K)

struct GgmlBlockQ4_0 {
  uint16_t d;      // scale
  uint8_t qs[16];  // element j in the low nibble of qs[j], element j + 16 in the high nibble
};
struct GgmlBlockQ4_1 {
  uint16_t d;  // scale
  uint16_t m;  // minimum (offset)
  uint8_t qs[16];
};
struct GgmlBlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];  // bit j of the little-endian u32 is bit 4 of element j
  uint8_t qs[16];
};
struct GgmlBlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct GgmlBlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct GgmlBlockQ4_K {
  uint16_t d;          // super-block scale of the 6-bit sub-block scales
  uint16_t dmin;       // super-block scale of the 6-bit sub-block minimums
  uint8_t scales[12];  // 8 scales and 8 minimums, 6 bits each
  uint8_t qs[128];     // 4-bit quants
};
struct GgmlBlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];   // bit 4 of the quants
  uint8_t qs[128];  // bits 0-3 of the quants
};
struct GgmlBlockQ6_K {
  uint8_t ql[128];    // bits 0-3 of the quants
  uint8_t qh[64];     // bits 4-5 of the quants
  int8_t scales[16];  // 8-bit sub-block scales
  uint16_t d;         // super-block scale
};

static_assert(sizeof(GgmlBlockQ4_0) == 18 && sizeof(GgmlBlockQ4_1) == 20 && sizeof(GgmlBlockQ5_0) == 22 &&
              sizeof(GgmlBlockQ5_1) == 24 && sizeof(GgmlBlockQ8_0) == 34 && sizeof(GgmlBlockQ4_K) == 144 &&
              sizeof(GgmlBlockQ5_K) == 176 && sizeof(GgmlBlockQ6_K) == 210);

// The types dequantize_ggml handles: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
bool can_dequantize_ggml(GgmlType type);

// Converts `out.size()` elements (a multiple of the type's block size) stored as `type` in `data` (exactly
// their blocks' bytes) to float. Throws qllm::Error naming the type for an unsupported type, a count that is
// not a whole number of blocks, or a byte count that does not match.
void dequantize_ggml(GgmlType type, std::span<const std::byte> data, std::span<float> out);

// One Q4_0 or Q4_1 block unpacked for repacking into other 4-bit layouts: the 32 raw nibbles in element
// order and the fp16 bits of the scale `d` and (Q4_1) the minimum `m`. Element i is
// (q[i] - 8) * d for Q4_0 and q[i] * d + m for Q4_1. `block` points at the block's bytes (no alignment).
struct GgmlQ4Nibbles {
  uint8_t q[32];
  uint16_t d;
  uint16_t m;  // 0 for Q4_0
};
GgmlQ4Nibbles unpack_q4_0_block(const std::byte* block);
GgmlQ4Nibbles unpack_q4_1_block(const std::byte* block);

// A [rows, cols] Q4_0 or Q4_1 tensor (GGUF shape [cols, rows]: rows of whole blocks, `data` exactly its
// bytes) as an Int4Matrix with the same values: GROUPWISE g32 with f16 scales, symmetric for Q4_0
// ((q - 8) * d), min offset for Q4_1 (q * d + m). dequantize_int4_ref of the result equals
// dequantize_ggml bit for bit. Throws qllm::Error naming the type and shape otherwise.
Int4Matrix int4_from_ggml(GgmlType type, std::span<const std::byte> data, int64_t rows, int64_t cols);

}  // namespace qllm
