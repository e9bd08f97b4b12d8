// Embedding gather on the GPU and its CPU reference (embedding_ref.cpp, the spec): residual f32
// [tokens, hidden] = row ids[t] of the embedding table, ids read from device memory. A tied model shares one
// table between the embedding and lm_head, so the gather reads each of the three storages the GEMMs read:
//   Dense     T [vocab, hidden]                         value = f32(t)
//   Int8Rows  int8 [vocab, hidden] + f32 absmax [vocab]  value = q * absmax / 127 (int8q::dequantize: two
//             rounded f32 operations, docs/FORMATS.md "LLM.int8() rows")
//   Int4      the W4A16 repacked layout, N = vocab, K = hidden (docs/FORMATS.md "W4A16 repacked layout")
//             value = (u - z) * s in f32 (exact: a 5-bit integer times a 16-bit float), z = 8 when symmetric,
//             else the zero offset minus the magic; min offset (GGUF Q4_1): u * s + m in f32 (one rounding,
//             ggml's value, int4::dequantize_value_min); groups as the layout stores them (W4A16Layout: K padded
//             to 64, ceil(padded K / group_k) groups per row, the last real one partial when group_k does not
//             divide K; group_k a multiple of 16, launch_embedding says so otherwise).
// An id outside [0, vocab) writes a row of zeros and sets *error_flag to 1 (the host checks ids before
// upload; this keeps a bad id from reading out of bounds).
// Bound: memory, 4·hidden bytes written per token plus one table row read (2·hidden dense, hidden int8,
// hidden / 2 int4): negligible next to the GEMMs; one CTA per token.
#pragma once

#include <cstdint>

#include "qllm/dtype.h"

struct CUstream_st;  // cudaStream_t without the CUDA headers (the reference builds without them)

namespace qllm {

enum class EmbeddingStorage { Dense, Int8Rows, Int4 };

// A view of the table (device pointers for the kernel, host pointers for the reference).
struct EmbeddingTable {
  EmbeddingStorage storage = EmbeddingStorage::Dense;
  int64_t vocab = 0;
  int64_t hidden = 0;
  DType dtype =
      DType::BF16;  // Dense: the element type; Int4: the activation dtype of scales and zero offsets
  const void* dense = nullptr;          // Dense: T [vocab, hidden]
  const int8_t* int8_values = nullptr;  // Int8Rows: [vocab, hidden]
  const float* int8_absmax = nullptr;   // Int8Rows: [vocab]
  int64_t int8_row_stride = 0;  // Int8Rows: values between row starts, >= hidden (0: hidden); a QuantLinear's
                                // int8 weight is stored padded to K rounded up to 64 (QuantLinear::int8()->k)
  const uint8_t* int4_qweight =
      nullptr;  // Int4: the W4A16 layout's padded_n * padded_k / 2 bytes (any vocab, even hidden)
  const uint16_t* int4_scales = nullptr;        // Int4: [padded vocab / 16][groups][8][2]
  const uint16_t* int4_zero_offsets = nullptr;  // Int4: same order, magic + z; null when symmetric
  const uint16_t* int4_mins = nullptr;          // Int4: same order, the minimums m; null unless min offset
  int64_t int4_group_k = 0;                     // Int4: weights of a row sharing one scale
};

struct EmbeddingParams {
  EmbeddingTable table;
  int64_t tokens = 0;
  const int32_t* ids = nullptr;  // [tokens]
  float* out = nullptr;          // f32 [tokens, hidden]
  int* error_flag = nullptr;     // may be null
};

void launch_embedding(const EmbeddingParams& params, CUstream_st* stream);
void embedding_ref(const EmbeddingParams& params);

namespace detail {
void enqueue_embedding(const EmbeddingParams& params, CUstream_st* stream);  // embedding.cu, validated
}  // namespace detail

}  // namespace qllm
