// GGUF Q4_0 / Q4_1 weights as qllm INT4 matrices with the same values (docs/FORMATS.md, "GGUF / ggml
// blocks" and "INT4 weights"): a ggml block is one group of 32 weights of a row, so the nibbles and the fp16
// scales (and Q4_1's minimums) move over unchanged; only the nibble order within a block changes (ggml keeps
// the block's first half in the low nibbles, qllm packs elements 2i, 2i + 1 into one byte).
#include <cstring>

#include "qllm/error.h"
#include "quant/ggml_blocks.h"

namespace qllm {

Int4Matrix int4_from_ggml(GgmlType type, std::span<const std::byte> data, int64_t rows, int64_t cols) {
  QLLM_CHECK(type == GgmlType::Q4_0 || type == GgmlType::Q4_1,
             "INT4 from ggml: {} blocks are not q4_0 or q4_1 (only those map onto qllm's INT4 exactly)",
             ggml_type_name(type));
  QLLM_CHECK(rows > 0 && cols > 0 && cols % kGgmlBlock == 0,
             "INT4 from ggml: a [{}, {}] {} tensor needs rows of whole 32-weight blocks", rows, cols,
             ggml_type_name(type));
  const bool q4_1 = type == GgmlType::Q4_1;
  const size_t block_bytes = q4_1 ? sizeof(GgmlBlockQ4_1) : sizeof(GgmlBlockQ4_0);
  const int64_t blocks = rows * (cols / kGgmlBlock);
  QLLM_CHECK(data.size() == static_cast<size_t>(blocks) * block_bytes,
             "INT4 from ggml: a [{}, {}] {} tensor takes {} bytes, got {}", rows, cols, ggml_type_name(type),
             static_cast<size_t>(blocks) * block_bytes, data.size());
  Int4Matrix m;
  m.rows = rows;
  m.cols = cols;
  // Q4_0: (q - 8) * d is the symmetric scheme. Q4_1: q * d + m, the min-offset variant.
  m.scheme = {.granularity = Granularity::Groupwise,
              .group_size = kGgmlBlock,
              .zero_point = false,
              .min_offset = q4_1,
              .scale_dtype = DType::F16,
              .search = ScaleSearch::None};
  m.packed.assign(static_cast<size_t>(rows * cols / 2), 0);
  m.scales.resize(static_cast<size_t>(blocks));
  if (q4_1) m.mins.resize(static_cast<size_t>(blocks));
  // Blocks are back to back along each row, so block b is group b of the row-major group numbering.
  for (int64_t b = 0; b < blocks; ++b) {
    const std::byte* block = data.data() + static_cast<size_t>(b) * block_bytes;
    const GgmlQ4Nibbles q = q4_1 ? unpack_q4_1_block(block) : unpack_q4_0_block(block);
    m.scales[static_cast<size_t>(b)] = q.d;
    if (q4_1) m.mins[static_cast<size_t>(b)] = q.m;
    uint8_t* out = m.packed.data() + b * (kGgmlBlock / 2);
    for (int i = 0; i < kGgmlBlock / 2; ++i)
      out[i] = static_cast<uint8_t>(q.q[2 * i] | (q.q[2 * i + 1] << 4));
  }
  return m;
}

}  // namespace qllm
