// CPU reference embedding gather (the spec of embedding.cu). The INT4 table is read through the W4A16
// layout's own address formula (W4A16Weights::locate), and its values are those of dequantize_w4a16_ref(...,
// Exact) (tested in tests/cpu/test_embedding_ref.cpp).
#include <cstddef>

#include "kernels/elementwise/embedding.h"
#include "qllm/error.h"
#include "qllm/half.h"
#include "quant/int4_math.h"
#include "quant/int8_math.h"
#include "quant/w4a16_layout.h"

namespace qllm {

namespace {

float int4_value(const EmbeddingTable& t, int64_t row, int64_t col) {
  W4A16Layout layout;
  layout.n = t.vocab;
  layout.k = t.hidden;
  layout.group_k = t.int4_group_k;
  int64_t byte;
  int shift;
  W4A16Weights::locate(layout, row, col, byte, shift);
  const int u = (t.int4_qweight[byte] >> shift) & 0x0f;
  const int64_t groups_per_row = layout.groups_per_row();
  const int64_t index =
      (((row / 16) * groups_per_row + col / t.int4_group_k) * 8 + row % 8) * 2 + (row % 16) / 8;
  const bool bf16 = t.dtype == DType::BF16;
  const float scale =
      bf16 ? bf16_bits_to_float(t.int4_scales[index]) : half_bits_to_float(t.int4_scales[index]);
  if (t.int4_mins != nullptr) {
    const uint16_t m = t.int4_mins[index];
    return int4::dequantize_value_min(static_cast<uint8_t>(u), scale,
                                      bf16 ? bf16_bits_to_float(m) : half_bits_to_float(m));
  }
  const int zero = t.int4_zero_offsets == nullptr ? 8 : t.int4_zero_offsets[index] - (bf16 ? 0x4300 : 0x6400);
  return static_cast<float>(u - zero) * scale;
}

float table_value(const EmbeddingTable& t, int64_t row, int64_t col) {
  const auto i = static_cast<size_t>(row * t.hidden + col);
  switch (t.storage) {
    case EmbeddingStorage::Dense: {
      const uint16_t bits = static_cast<const uint16_t*>(t.dense)[i];
      return t.dtype == DType::BF16 ? bf16_bits_to_float(bits) : half_bits_to_float(bits);
    }
    case EmbeddingStorage::Int8Rows: {
      const int64_t stride = t.int8_row_stride ? t.int8_row_stride : t.hidden;
      return int8q::dequantize(t.int8_values[row * stride + col], t.int8_absmax[row]);
    }
    case EmbeddingStorage::Int4:
      return int4_value(t, row, col);
  }
  fail("embedding_ref: unknown table storage");
}

}  // namespace

void embedding_ref(const EmbeddingParams& p) {
  const EmbeddingTable& t = p.table;
  for (int64_t token = 0; token < p.tokens; ++token) {
    const int32_t id = p.ids[token];
    const bool valid = id >= 0 && id < t.vocab;
    if (!valid && p.error_flag != nullptr) *p.error_flag = 1;
    for (int64_t col = 0; col < t.hidden; ++col)
      p.out[token * t.hidden + col] = valid ? table_value(t, id, col) : 0.0f;
  }
}

}  // namespace qllm
