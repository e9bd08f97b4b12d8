// Embedding gather kernel (the spec: embedding_ref.cpp): one CTA per token, each thread converting chunks
// of 8 consecutive columns of the table row into f32 (16-byte loads and stores when aligned).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/common/row_ops.cuh"
#include "kernels/elementwise/embedding.h"
#include "kernels/runtime/cuda_utils.h"
#include "quant/int8_math.h"

namespace qllm {

namespace {

using namespace kernels::ops;

constexpr int kMaxThreads = 256;

// The INT4 value of (row, col): the address formula of W4A16Weights::locate and the scale order of
// docs/FORMATS.md, on the layout's padded matrix (K rounded up to 64; ceil(padded K / group_k) groups per
// row, the last real one possibly partial).
template <bool kBf16>
__device__ __forceinline__ float int4_value(const EmbeddingTable& t, int64_t row, int64_t col) {
  const int64_t padded_hidden = (t.hidden + 63) / 64 * 64;
  const int64_t unit = (row / 16) * (padded_hidden / 64) + col / 64;
  const int64_t r = row % 16, c = col % 64;
  const int64_t step = c / 16, cc = c % 16;
  const int64_t lane = (r % 8) * 4 + (cc % 8) / 2;
  const int reg = static_cast<int>(r / 8 + 2 * (cc / 8));
  const int position = reg + 4 * static_cast<int>(cc % 2);
  const int64_t byte = unit * 512 + lane * 16 + 4 * step + position / 2;
  const int u = (t.int4_qweight[byte] >> (4 * (position % 2))) & 0x0f;
  const int64_t groups_per_row = (padded_hidden + t.int4_group_k - 1) / t.int4_group_k;
  const int64_t index =
      (((row / 16) * groups_per_row + col / t.int4_group_k) * 8 + row % 8) * 2 + (row % 16) / 8;
  const uint16_t scale_bits = t.int4_scales[index];
  const float scale =
      kBf16 ? __bfloat162float(__ushort_as_bfloat16(scale_bits)) : __half2float(__ushort_as_half(scale_bits));
  if (t.int4_mins != nullptr) {  // u * s is exact: one rounding of the sum, ggml's value
    const uint16_t m = t.int4_mins[index];
    return __fadd_rn(__fmul_rn(static_cast<float>(u), scale),
                     kBf16 ? __bfloat162float(__ushort_as_bfloat16(m)) : __half2float(__ushort_as_half(m)));
  }
  const int zero =
      t.int4_zero_offsets == nullptr ? 8 : t.int4_zero_offsets[index] - (kBf16 ? 0x4300 : 0x6400);
  return __fmul_rn(static_cast<float>(u - zero), scale);
}

// Table values of columns [col, col + count) of `row` (count <= 8; the rest read as 0).
template <EmbeddingStorage kStorage, typename T>
__device__ __forceinline__ void load_row8(const EmbeddingTable& t, int64_t row, int64_t col, int count,
                                          bool vector, float (&v)[8]) {
  const int64_t stride =
      kStorage == EmbeddingStorage::Int8Rows && t.int8_row_stride != 0 ? t.int8_row_stride : t.hidden;
  const int64_t i = row * stride + col;
  if constexpr (kStorage == EmbeddingStorage::Dense) {
    load8(static_cast<const T*>(t.dense) + i, vector, count, v);
  } else if constexpr (kStorage == EmbeddingStorage::Int8Rows) {
    int8_t q[8];
    if (vector) {
      const uint2 w = *reinterpret_cast<const uint2*>(t.int8_values + i);
#pragma unroll
      for (int e = 0; e < 8; ++e) q[e] = static_cast<int8_t>(((e < 4 ? w.x : w.y) >> (8 * (e % 4))) & 0xffu);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) q[e] = e < count ? t.int8_values[i + e] : int8_t{0};
    }
    const float absmax = t.int8_absmax[row];
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = int8q::dequantize(q[e], absmax);
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e)
      v[e] = e < count ? int4_value<std::is_same_v<T, __nv_bfloat16>>(t, row, col + e) : 0.0f;
  }
}

template <EmbeddingStorage kStorage, typename T>
__global__ void __launch_bounds__(kMaxThreads) embedding_kernel(EmbeddingParams p, bool vector) {
  const EmbeddingTable& t = p.table;
  const int64_t token = blockIdx.x;
  const int32_t id = p.ids[token];
  const bool valid = id >= 0 && id < t.vocab;
  if (!valid && threadIdx.x == 0 && p.error_flag != nullptr) atomicOr(p.error_flag, 1);
  float* out = p.out + token * t.hidden;
  for (int64_t col = threadIdx.x * 8; col < t.hidden; col += static_cast<int64_t>(blockDim.x) * 8) {
    const int count = count8(t.hidden - col);
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (valid) load_row8<kStorage, T>(t, id, col, count, vector, v);
    store8(out + col, vector, count, v);
  }
}

template <EmbeddingStorage kStorage, typename T>
void enqueue_typed(const EmbeddingParams& p, bool vector, cudaStream_t stream) {
  const auto threads =
      static_cast<unsigned>(std::min<int64_t>(kMaxThreads, ceil_div(ceil_div(p.table.hidden, 8), 32) * 32));
  embedding_kernel<kStorage, T><<<static_cast<unsigned>(p.tokens), threads, 0, stream>>>(p, vector);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

namespace detail {

void enqueue_embedding(const EmbeddingParams& p, CUstream_st* stream) {
  const EmbeddingTable& t = p.table;
  // Whole chunks of 8 move as vectors when every row starts aligned: 16 bytes of output (and of a 16-bit
  // table), 8 bytes of int8.
  const bool rows_aligned = t.hidden % 8 == 0 && is_aligned(p.out, 16);
  const bool bf16 = t.dtype == DType::BF16;
  switch (t.storage) {
    case EmbeddingStorage::Dense:
      if (bf16) {
        enqueue_typed<EmbeddingStorage::Dense, __nv_bfloat16>(p, rows_aligned && is_aligned(t.dense, 16),
                                                              stream);
      } else {
        enqueue_typed<EmbeddingStorage::Dense, __half>(p, rows_aligned && is_aligned(t.dense, 16), stream);
      }
      break;
    case EmbeddingStorage::Int8Rows:
      enqueue_typed<EmbeddingStorage::Int8Rows, float>(
          p, rows_aligned && t.int8_row_stride % 8 == 0 && is_aligned(t.int8_values, 8), stream);
      break;
    case EmbeddingStorage::Int4:
      if (bf16) {
        enqueue_typed<EmbeddingStorage::Int4, __nv_bfloat16>(p, rows_aligned, stream);
      } else {
        enqueue_typed<EmbeddingStorage::Int4, __half>(p, rows_aligned, stream);
      }
      break;
  }
}

}  // namespace detail
}  // namespace qllm
