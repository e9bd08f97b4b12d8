// Embedding host API: validates the table view and the parameters, then enqueues the kernel (embedding.cu).
#include "kernels/elementwise/embedding.h"
#include "qllm/error.h"

namespace qllm {

void launch_embedding(const EmbeddingParams& p, CUstream_st* stream) {
  const EmbeddingTable& t = p.table;
  QLLM_CHECK(t.vocab >= 1 && t.hidden >= 1 && t.vocab <= INT32_MAX && t.hidden <= INT32_MAX,
             "embedding: bad table shape [{}, {}]", t.vocab, t.hidden);
  QLLM_CHECK(p.tokens >= 0 && p.tokens <= INT32_MAX, "embedding: {} tokens (0..{})", p.tokens, INT32_MAX);
  switch (t.storage) {
    case EmbeddingStorage::Dense:
      QLLM_CHECK(t.dtype == DType::BF16 || t.dtype == DType::F16,
                 "embedding: a dense table is bf16 or f16, not {}", dtype_name(t.dtype));
      QLLM_CHECK(t.dense != nullptr, "embedding: null dense table");
      break;
    case EmbeddingStorage::Int8Rows:
      QLLM_CHECK(t.int8_values != nullptr && t.int8_absmax != nullptr,
                 "embedding: null int8 values or absmax");
      QLLM_CHECK(t.int8_row_stride == 0 || t.int8_row_stride >= t.hidden,
                 "embedding: int8 rows {} apart are shorter than hidden {}", t.int8_row_stride, t.hidden);
      break;
    case EmbeddingStorage::Int4:
      QLLM_CHECK(t.dtype == DType::BF16 || t.dtype == DType::F16,
                 "embedding: INT4 scales are in the activation dtype, bf16 or f16, not {}",
                 dtype_name(t.dtype));
      // The W4A16 layout pads N and K (W4A16Layout::padded_n/padded_k): any vocab, an even hidden size.
      QLLM_CHECK(t.hidden % 2 == 0, "embedding: an INT4 table needs an even hidden size, table is [{}, {}]",
                 t.vocab, t.hidden);
      QLLM_CHECK(
          t.int4_group_k >= 16 && t.int4_group_k % 16 == 0,
          "embedding: the W4A16 layout needs a group size that is a multiple of 16, got {} (table [{}, {}])",
          t.int4_group_k, t.vocab, t.hidden);
      QLLM_CHECK(t.int4_qweight != nullptr && t.int4_scales != nullptr,
                 "embedding: null INT4 weights or scales");
      QLLM_CHECK(t.int4_zero_offsets == nullptr || t.int4_mins == nullptr,
                 "embedding: an INT4 table has zero points or minimums, not both");
      break;
    default:
      fail("embedding: unknown table storage {}", static_cast<int>(t.storage));
  }
  if (p.tokens == 0) return;
  QLLM_CHECK(p.ids != nullptr && p.out != nullptr, "embedding: null ids or output");
  detail::enqueue_embedding(p, stream);
}

}  // namespace qllm
