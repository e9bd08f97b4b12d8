// INT4 weight quantization: schemes, the stored container, and the CPU reference (the spec).
// Byte layouts are documented in docs/FORMATS.md; the arithmetic lives in src/quant/int4_math.h,
// shared by this reference and the CUDA kernels so that both give the same bits.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qllm/dtype.h"
#include "qllm/half.h"

namespace qllm {

// How many weights share one scale.
enum class Granularity {
  Global,     // one scale for the whole matrix
  Rowwise,    // one scale per output row
  Groupwise,  // one scale per `group_size` consecutive weights of a row
};

// How the scale of a group is chosen.
enum class ScaleSearch {
  None,  // plain range: absmax / 7 (symmetric) or (max - min) / 15 (asymmetric)
  Mse,   // clip the range to the ratio (100%, 95%, ... 30%, then +-4% around the best) with least squared
         // error
  Mae,   // same search, least absolute error
};

struct Int4Scheme {
  Granularity granularity = Granularity::Groupwise;
  int64_t group_size = 128;  // used by Groupwise only
  bool zero_point = false;   // asymmetric: q in [0, 15] with a per-group zero point
  // GGUF Q4_1's variant: w' = q * s + m with a 16-bit minimum m per group (scale dtype) instead of a zero
  // point. qllm does not quantize to it; int4_from_ggml (quant/ggml_blocks.h) converts files' Q4_1 weights.
  bool min_offset = false;
  DType scale_dtype = DType::F16;  // F16 or BF16
  ScaleSearch search = ScaleSearch::None;

  std::string describe() const;  // e.g. "groupwise g128 sym f16-scale search=mae"
};

std::string_view granularity_name(Granularity granularity);  // "GLOBAL", "ROWWISE", "GROUPWISE"
std::string_view scale_search_name(ScaleSearch search);      // "none", "mse", "mae"
Granularity parse_granularity(std::string_view name);        // global|rowwise|groupwise (any case)
ScaleSearch parse_scale_search(std::string_view name);       // none|mse|mae

// Groups along K within a row (docs/FORMATS.md, "Groups"): GLOBAL is one group over the whole matrix,
// ROWWISE one group per row, GROUPWISE(g) ceil(K / g) groups per row, group i of row r covering columns
// [i * g, min((i + 1) * g, K)): when g does not divide K the last group of every row is partial (K mod g
// weights). Groups are numbered row-major (row r, index i -> r * groups_per_row + i); when g divides K, group
// i is exactly the flat range [i * g, (i + 1) * g), as before partial groups existed.
struct GroupLayout {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t group_elems = 0;     // weights of a whole group: rows * cols (GLOBAL), cols (ROWWISE) or g
  int64_t groups_per_row = 0;  // 0 for GLOBAL (its one group spans every row), else ceil(cols / group_elems)
  int64_t num_groups = 0;

  // Every group is whole and group i is the flat range [i * group_elems, (i + 1) * group_elems).
  bool contiguous() const { return groups_per_row == 0 || cols % group_elems == 0; }
  int64_t group_of(int64_t row, int64_t col) const {
    return groups_per_row == 0 ? 0 : row * groups_per_row + col / group_elems;
  }
  int64_t group_of_flat(int64_t flat) const { return group_of(flat / cols, flat % cols); }
  int64_t row_of(int64_t group) const { return groups_per_row == 0 ? 0 : group / groups_per_row; }
  // Flat index of the group's first weight, and its number of weights (the last of a row may be partial).
  int64_t first_flat(int64_t group) const {
    return groups_per_row == 0 ? 0 : row_of(group) * cols + (group % groups_per_row) * group_elems;
  }
  int64_t size(int64_t group) const {
    if (groups_per_row == 0) return group_elems;
    const int64_t begin = (group % groups_per_row) * group_elems;
    return cols - begin < group_elems ? cols - begin : group_elems;
  }
};

// Checks the shape against the scheme (positive sizes, even K for packing, g > 0 and even, scale dtype)
// and returns the group layout; throws qllm::Error naming the offending value.
GroupLayout validate_int4_shape(int64_t rows, int64_t cols, const Int4Scheme& scheme);

// A quantized [rows, cols] matrix as stored (docs/FORMATS.md, "INT4 canonical layout").
struct Int4Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  Int4Scheme scheme;
  std::vector<uint8_t> packed;   // rows * cols / 2 bytes; element 2i in the low nibble of byte i
  std::vector<uint16_t> scales;  // one per group, raw fp16 or bf16 bits
  std::vector<uint8_t> zeros;    // one per group (0..15) when scheme.zero_point, else empty (implied 8)
  std::vector<uint16_t> mins;    // one per group when scheme.min_offset: raw bits in the scale dtype

  GroupLayout layout() const { return validate_int4_shape(rows, cols, scheme); }
  int64_t group_of(int64_t row, int64_t col) const { return layout().group_of(row, col); }
  size_t stored_bytes() const;                          // packed + scales + zeros, as held in memory
  double compression(DType source = DType::F16) const;  // source bytes / stored_bytes()
  float scale(int64_t group) const;
  float min(int64_t group) const;  // scheme.min_offset only
  int zero(int64_t group) const { return zeros.empty() ? 8 : zeros[group]; }
  uint8_t nibble(int64_t flat_index) const {
    const uint8_t byte = packed[flat_index / 2];
    return (flat_index & 1) ? (byte >> 4) : (byte & 0x0f);
  }
};

// Whether two schemes store weights the same way (granularity, group size, zero point or min offset, scale
// dtype): the search that chose the scales does not matter once they are stored.
bool same_stored_format(const Int4Scheme& a, const Int4Scheme& b);

// Checks a matrix that came from outside (a checkpoint): array sizes against the shape and scheme, zero
// points in 0..15. `what` names it in the error (e.g. "model.safetensors: model.layers.0.mlp.up_proj").
void validate_int4_matrix(const Int4Matrix& matrix, std::string_view what);

// Row `row` of the reconstruction, as dequantize_int4_ref computes it: out[cols].
void dequantize_int4_row(const Int4Matrix& matrix, int64_t row, float* out);

// The rows of `parts` one after the other (a fused projection: q, k, v or gate, up). Their schemes must store
// the same way and their column counts agree (else qllm::Error naming the part). GLOBAL parts of more than
// one matrix become ROWWISE rows that repeat their part's scale (each part keeps its own scale).
Int4Matrix concat_int4_rows(std::span<const Int4Matrix* const> parts);

// CPU reference quantizer. Rejects NaN/Inf weights and scales that overflow the scale dtype.
Int4Matrix quantize_int4_ref(std::span<const Half> weights, int64_t rows, int64_t cols,
                             const Int4Scheme& scheme);
Int4Matrix quantize_int4_ref(std::span<const BFloat16> weights, int64_t rows, int64_t cols,
                             const Int4Scheme& scheme);
Int4Matrix quantize_int4_ref(std::span<const float> weights, int64_t rows, int64_t cols,
                             const Int4Scheme& scheme);

// w' = (q - z) * s, exact in float (min offset: q * s + m, one rounding of the sum, as ggml's Q4_1); rounded
// once to the output type.
std::vector<float> dequantize_int4_ref(const Int4Matrix& matrix);
std::vector<Half> dequantize_int4_to_half_ref(const Int4Matrix& matrix);
std::vector<BFloat16> dequantize_int4_to_bf16_ref(const Int4Matrix& matrix);

// Packing of 4-bit values (0..15): two per byte (element 2i low nibble) or eight per 32-bit word
// (element 8i + j in bits 4j..4j+3). On little-endian machines both give the same bytes.
std::vector<uint8_t> pack_nibbles_u8(std::span<const uint8_t> nibbles);
std::vector<uint32_t> pack_nibbles_u32(std::span<const uint8_t> nibbles);
std::vector<uint8_t> unpack_nibbles(std::span<const uint8_t> packed, int64_t count);
std::vector<uint8_t> unpack_nibbles(std::span<const uint32_t> packed, int64_t count);

// Error of a reconstruction against the original, over all elements.
struct QuantError {
  double mae = 0;          // mean |w - w'|
  double max_abs_err = 0;  // max |w - w'|
  double rel_fro_err = 0;  // ||w - w'||_F / ||w||_F (0 when w is all zeros)
};
QuantError measure_error(std::span<const float> original, std::span<const float> reconstructed);

}  // namespace qllm
