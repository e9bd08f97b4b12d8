// LLM.int8() activation prep on the GPU, bit-identical to quantize_int8_rows_ref / outlier_columns_ref:
// find the outlier columns (any |x| >= threshold), quantize every row with them left out (absmax over the
// rest, q = round(x * 127 / absmax)), and gather the outlier columns' activations into a compact buffer for
// the GEMM's 16-bit correction. Also the offline weight quantizer (the same row kernel, no outliers). Decode
// batches take the fused path in gemm_int8_skinny.cu instead.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/cuda_utils.h"
#include "kernels/gemm_int8_launch.h"
#include "quant/int8_math.h"

namespace qllm::kernels {

namespace {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float element(uint32_t bits16, bool bf16) {
  return bf16 ? __uint_as_float(bits16 << 16)
              : __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
}

// The 8 activations of a 16-byte chunk.
__device__ __forceinline__ void load8(const void* x, int64_t chunk, bool bf16, uint16_t (&raw)[8],
                                      float (&v)[8]) {
  const uint4 q = __ldg(static_cast<const uint4*>(x) + chunk);
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    raw[2 * i] = static_cast<uint16_t>(words[i] & 0xffffu);
    raw[2 * i + 1] = static_cast<uint16_t>(words[i] >> 16);
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = element(raw[j], bf16);
}

__device__ __forceinline__ bool is_outlier_column(const uint32_t* bits, int col) {
  return bits != nullptr && ((bits[col >> 5] >> (col & 31)) & 1u);
}

__device__ __forceinline__ void report_nonfinite(Int8PrepStatus* status, int64_t flat) {
  atomicMin(&status->first_nonfinite, static_cast<unsigned long long>(flat));
}

// Flags the columns of chunk `chunk` (8 activations) that hold an outlier; checks finiteness.
__device__ __forceinline__ void flag_chunk(const Int8PrepArgs& a, int64_t chunk, uint32_t* bits) {
  uint16_t raw[8];
  float v[8];
  load8(a.x, chunk, a.bf16, raw, v);
  const int col0 = static_cast<int>((chunk * 8) % a.k);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    if (!isfinite(v[j])) report_nonfinite(a.status, chunk * 8 + j);
    if (fabsf(v[j]) >= a.threshold) atomicOr(&bits[(col0 + j) >> 5], 1u << ((col0 + j) & 31));
  }
}

// Exclusive prefix of the bitmap's popcounts, into `prefix` (words + 1 entries), by one warp.
__device__ void bitmap_prefix(const uint32_t* bits, int words, int* prefix) {
  const int lane = threadIdx.x % 32;
  int carry = 0;
  for (int base = 0; base < words; base += 32) {
    const int w = base + lane;
    const int count = w < words ? __popc(bits[w]) : 0;
    int inclusive = count;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int other = __shfl_up_sync(kFullMask, inclusive, o);
      if (lane >= o) inclusive += other;
    }
    if (w < words) prefix[w] = carry + inclusive - count;
    carry += __shfl_sync(kFullMask, inclusive, 31);
  }
  if (lane == 0) prefix[words] = carry;
}

// Writes the ascending outlier column list (capped at kMaxOutlierColumns) and the count.
__device__ void write_outlier_list(const Int8PrepArgs& a, const uint32_t* bits, const int* prefix,
                                   int words) {
  for (int w = threadIdx.x; w < words; w += blockDim.x) {
    uint32_t word = bits[w];
    int index = prefix[w];
    while (word) {
      const int bit = __ffs(word) - 1;
      if (index < kMaxOutlierColumns) a.outlier_cols[index] = w * 32 + bit;
      ++index;
      word &= word - 1;
    }
  }
  if (threadIdx.x == 0) a.status->outlier_count = prefix[words];
}

// Quantizes row `row` with the threads [first, first + count) of the block (count a multiple of 32, each
// group of 32 a full warp): absmax over the non-outlier columns, int8 values, outlier activations gathered.
template <int kThreadsPerRow>
__device__ void quantize_row(const Int8PrepArgs& a, int row, int rank, const uint32_t* bits,
                             const int* prefix, float* reduce_scratch) {
  const int chunks = a.k / 8;
  const int64_t row_chunk = static_cast<int64_t>(row) * chunks;
  float absmax = 0.0f;
  for (int c = rank; c < chunks; c += kThreadsPerRow) {
    uint16_t raw[8];
    float v[8];
    load8(a.x, row_chunk + c, a.bf16, raw, v);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (bits == nullptr && !isfinite(v[j])) report_nonfinite(a.status, (row_chunk + c) * 8 + j);
      if (!is_outlier_column(bits, c * 8 + j)) absmax = fmaxf(absmax, fabsf(v[j]));
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) absmax = fmaxf(absmax, __shfl_xor_sync(kFullMask, absmax, o));
  if constexpr (kThreadsPerRow > 32) {
    const int warp = rank / 32;
    __syncthreads();
    if (rank % 32 == 0) reduce_scratch[warp] = absmax;
    __syncthreads();
    for (int w = 0; w < kThreadsPerRow / 32; ++w) absmax = fmaxf(absmax, reduce_scratch[w]);
  }
  const float inverse = int8q::inverse_step(absmax);
  for (int c = rank; c < chunks; c += kThreadsPerRow) {
    uint16_t raw[8];
    float v[8];
    load8(a.x, row_chunk + c, a.bf16, raw, v);
    uint32_t packed[2] = {0, 0};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = c * 8 + j;
      int8_t q = 0;
      if (is_outlier_column(bits, col)) {
        const int index = prefix[col >> 5] + __popc(bits[col >> 5] & ((1u << (col & 31)) - 1u));
        if (index < kMaxOutlierColumns)
          a.x_outliers[static_cast<int64_t>(row) * kMaxOutlierColumns + index] = raw[j];
      } else {
        q = int8q::quantize(v[j], inverse);
      }
      packed[j / 4] |= static_cast<uint32_t>(static_cast<uint8_t>(q)) << (8 * (j % 4));
    }
    *reinterpret_cast<uint2*>(a.xq + (row_chunk + c) * 8) = make_uint2(packed[0], packed[1]);
  }
  if (rank == 0) a.x_absmax[row] = absmax;
}

// ---- large m: bitmap kernel, then one CTA per row ----
constexpr int kRowThreads = 256;

__global__ void __launch_bounds__(256) int8_outlier_bits_kernel(const Int8PrepArgs a) {
  const int64_t chunks = static_cast<int64_t>(a.m) * a.k / 8;
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < chunks;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    flag_chunk(a, c, a.outlier_bits);
  }
}

__global__ void __launch_bounds__(kRowThreads) int8_rows_kernel(const Int8PrepArgs a, bool with_outliers) {
  extern __shared__ uint32_t smem[];
  __shared__ float reduce_scratch[kRowThreads / 32];
  const int words = a.k / 32;
  uint32_t* bits = smem;
  int* prefix = reinterpret_cast<int*>(smem + words);
  if (with_outliers) {
    for (int w = threadIdx.x; w < words; w += kRowThreads) bits[w] = __ldcg(a.outlier_bits + w);
    __syncthreads();
    if (threadIdx.x < 32) bitmap_prefix(bits, words, prefix);
    __syncthreads();
    if (blockIdx.x == 0) write_outlier_list(a, bits, prefix, words);
  } else if (blockIdx.x == 0 && threadIdx.x == 0 && a.outlier_cols != nullptr) {
    a.status->outlier_count = 0;
  }
  quantize_row<kRowThreads>(a, blockIdx.x, threadIdx.x, with_outliers ? bits : nullptr, prefix,
                            reduce_scratch);
}

size_t bitmap_smem(int k) {
  return static_cast<size_t>(k / 32) * 4 * 2 + 16;
}

}  // namespace

void launch_int8_prep(const Int8PrepArgs& a, cudaStream_t stream) {
  const bool enabled = a.threshold > 0.0f && a.threshold < 3.0e38f;
  if (enabled) {
    QLLM_CUDA_CHECK(cudaMemsetAsync(a.outlier_bits, 0, static_cast<size_t>(a.k / 32) * 4, stream));
    // A grid-stride loop: 16 CTAs of 256 threads per SM keep the reads in flight; more only adds tails.
    const int64_t chunks = static_cast<int64_t>(a.m) * a.k / 8;
    const auto blocks =
        static_cast<unsigned int>(std::min<int64_t>((chunks + 255) / 256, multiprocessor_count() * 16));
    int8_outlier_bits_kernel<<<blocks, 256, 0, stream>>>(a);
  }
  int8_rows_kernel<<<a.m, kRowThreads, enabled ? bitmap_smem(a.k) : 0, stream>>>(a, enabled);
}

void launch_int8_quantize_rows(const Int8PrepArgs& a, cudaStream_t stream) {
  int8_rows_kernel<<<a.m, kRowThreads, 0, stream>>>(a, false);  // no bitmap: no dynamic shared memory
}

}  // namespace qllm::kernels
