// LLM.int8() activation prep on the GPU, bit-identical to quantize_int8_rows_ref / outlier_columns_ref:
// find the outlier columns (any |x| >= threshold), quantize every row with them left out (absmax over the
// rest, q = round(x * 127 / absmax)), and gather the outlier columns' activations into a compact buffer for
// the GEMM's 16-bit correction. Also the offline weight quantizer (the same row kernel, no outliers). Decode
// batches take the fused path in gemm_int8_skinny.cu instead.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/common/dependent_launch.cuh"
#include "kernels/gemm/int8_launch.h"
#include "kernels/runtime/cuda_utils.h"
#include "quant/int8_math.h"

namespace qllm::kernels {

namespace {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float element(uint32_t bits16, bool bf16) {
  return bf16 ? __uint_as_float(bits16 << 16)
              : __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
}

// The 8 activations of a 16-byte chunk, as raw 16-bit patterns and as floats.
__device__ __forceinline__ void unpack8(uint4 q, bool bf16, uint16_t (&raw)[8], float (&v)[8]) {
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    raw[2 * i] = static_cast<uint16_t>(words[i] & 0xffffu);
    raw[2 * i + 1] = static_cast<uint16_t>(words[i] >> 16);
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = element(raw[j], bf16);
}

__device__ __forceinline__ uint4 load_chunk(const void* x, int64_t chunk) {
  return __ldg(static_cast<const uint4*>(x) + chunk);
}

__device__ __forceinline__ bool is_outlier_column(const uint32_t* bits, int col) {
  return bits != nullptr && ((bits[col >> 5] >> (col & 31)) & 1u);
}

__device__ __forceinline__ void report_nonfinite(Int8PrepStatus* status, int64_t flat) {
  atomicMin(&status->first_nonfinite, static_cast<unsigned long long>(flat));
}

// Flags the columns of chunk `chunk` (8 activations, loaded as `q`) that hold an outlier; checks finiteness.
__device__ __forceinline__ void flag_chunk(const Int8PrepArgs& a, int64_t chunk, uint4 q, uint32_t* bits) {
  uint16_t raw[8];
  float v[8];
  unpack8(q, a.bf16, raw, v);
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

// Writes the ascending outlier column list and the count.
__device__ void write_outlier_list(const Int8PrepArgs& a, const uint32_t* bits, const int* prefix,
                                   int words) {
  for (int w = threadIdx.x; w < words; w += blockDim.x) {
    uint32_t word = bits[w];
    int index = prefix[w];
    while (word) {
      const int bit = __ffs(word) - 1;
      a.outlier_cols[index] = w * 32 + bit;
      ++index;
      word &= word - 1;
    }
  }
  if (threadIdx.x == 0) {
    a.status->outlier_count = prefix[words];
    atomicMax(&a.status->max_outlier_count, prefix[words]);
  }
}

// Chunks (16 bytes) each thread has in flight: one load per thread at a time leaves DRAM idle.
constexpr int kChunksInFlight = 4;

// Calls visit(c, raw, v) for the chunks c = lane, lane + kThreadsPerRow, ... of the row starting at chunk
// `row_chunk`, loading kChunksInFlight of them before using any.
template <int kThreadsPerRow, typename Visit>
__device__ __forceinline__ void for_each_row_chunk(const Int8PrepArgs& a, int64_t row_chunk, int lane,
                                                   Visit&& visit) {
  const int chunks = a.k / 8;
  for (int c0 = lane; c0 < chunks; c0 += kThreadsPerRow * kChunksInFlight) {
    uint4 q[kChunksInFlight];
#pragma unroll
    for (int u = 0; u < kChunksInFlight; ++u)
      if (c0 + kThreadsPerRow * u < chunks) q[u] = load_chunk(a.x, row_chunk + c0 + kThreadsPerRow * u);
#pragma unroll
    for (int u = 0; u < kChunksInFlight; ++u) {
      const int c = c0 + kThreadsPerRow * u;
      if (c >= chunks) break;
      uint16_t raw[8];
      float v[8];
      unpack8(q[u], a.bf16, raw, v);
      visit(c, raw, v);
    }
  }
}

// The row's absmax over its non-outlier columns: this thread's share `absmax` combined over the row's
// kThreadsPerRow threads (through `scratch`, one float per warp, when the row spans warps). Every thread of
// the CTA calls it: it holds a barrier.
template <int kThreadsPerRow>
__device__ __forceinline__ float row_absmax(float absmax, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) absmax = fmaxf(absmax, __shfl_xor_sync(kFullMask, absmax, o));
  if constexpr (kThreadsPerRow > 32) {  // the row's warps meet in shared memory
    constexpr int kWarpsPerRow = kThreadsPerRow / 32;
    if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = absmax;
    __syncthreads();
    const float* row_scratch = scratch + (threadIdx.x / kThreadsPerRow) * kWarpsPerRow;
    for (int w = 0; w < kWarpsPerRow; ++w) absmax = fmaxf(absmax, row_scratch[w]);
  }
  return absmax;
}

// Folds chunk c's values into the running absmax (outlier columns left out); without a bitmap (no outlier
// scan ran) this is where NaN / Inf are caught.
__device__ __forceinline__ void absmax_of_chunk(const Int8PrepArgs& a, int64_t row_chunk, int c,
                                                const float (&v)[8], const uint32_t* bits, float& absmax) {
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    if (bits == nullptr && !isfinite(v[j])) report_nonfinite(a.status, (row_chunk + c) * 8 + j);
    if (!is_outlier_column(bits, c * 8 + j)) absmax = fmaxf(absmax, fabsf(v[j]));
  }
}

// Writes chunk c of row `row` as int8 (outlier columns as 0, their 16-bit values gathered instead).
__device__ __forceinline__ void quantize_chunk(const Int8PrepArgs& a, int row, int64_t row_chunk, int c,
                                               const uint16_t (&raw)[8], const float (&v)[8], float inverse,
                                               const uint32_t* bits, const int* prefix) {
  uint32_t packed[2] = {0, 0};
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int col = c * 8 + j;
    int8_t value = 0;
    if (is_outlier_column(bits, col)) {
      const int index = prefix[col >> 5] + __popc(bits[col >> 5] & ((1u << (col & 31)) - 1u));
      a.x_outliers[static_cast<int64_t>(row) * a.k + index] = raw[j];
    } else {
      value = int8q::quantize(v[j], inverse);
    }
    packed[j / 4] |= static_cast<uint32_t>(static_cast<uint8_t>(value)) << (8 * (j % 4));
  }
  *reinterpret_cast<uint2*>(a.xq + (row_chunk + c) * 8) = make_uint2(packed[0], packed[1]);
}

// Row `row`'s chunks lane, lane + kThreadsPerRow, ... into q (kChunks of them cover the row).
template <int kThreadsPerRow, int kChunks>
__device__ __forceinline__ void load_row(const Int8PrepArgs& a, int row, int lane, uint4 (&q)[kChunks]) {
  if (row >= a.m) return;
  const int chunks = a.k / 8;
#pragma unroll
  for (int u = 0; u < kChunks; ++u) {
    const int c = lane + kThreadsPerRow * u;
    if (c < chunks) q[u] = load_chunk(a.x, static_cast<int64_t>(row) * chunks + c);
  }
}

// Quantizes row `row` (or, past the last row, only takes part in the barrier) with kThreadsPerRow threads,
// `lane` the thread's rank among them: absmax over the non-outlier columns, int8 values, outlier activations
// gathered. each_chunk(visit) calls visit(c, raw, v) for the thread's chunks of the row, in registers
// (held_chunks) or streamed from memory (for_each_row_chunk; the second pass then finds the row in L1/L2).
template <int kThreadsPerRow, typename EachChunk>
__device__ void quantize_row(const Int8PrepArgs& a, int row, int lane, const uint32_t* bits,
                             const int* prefix, float* scratch, EachChunk&& each_chunk) {
  const bool valid = row < a.m;
  const int64_t row_chunk = static_cast<int64_t>(row) * (a.k / 8);
  float absmax = 0.0f;
  if (valid) {
    each_chunk([&](int c, const uint16_t(&)[8], const float(&v)[8]) {
      absmax_of_chunk(a, row_chunk, c, v, bits, absmax);
    });
  }
  absmax = row_absmax<kThreadsPerRow>(absmax, scratch);
  if (!valid) return;
  const float inverse = int8q::inverse_step(absmax);
  each_chunk([&](int c, const uint16_t(&raw)[8], const float(&v)[8]) {
    quantize_chunk(a, row, row_chunk, c, raw, v, inverse, bits, prefix);
  });
  if (lane == 0) a.x_absmax[row] = absmax;
}

// Calls visit(c, raw, v) for the chunks c = lane, lane + kThreadsPerRow, ... that load_row put in q.
template <int kThreadsPerRow, int kChunks, typename Visit>
__device__ __forceinline__ void for_each_held_chunk(const Int8PrepArgs& a, int lane,
                                                    const uint4 (&q)[kChunks], Visit&& visit) {
#pragma unroll
  for (int u = 0; u < kChunks; ++u) {
    const int c = lane + kThreadsPerRow * u;
    if (c >= a.k / 8) break;
    uint16_t raw[8];
    float v[8];
    unpack8(q[u], a.bf16, raw, v);
    visit(c, raw, v);
  }
}

// ---- large m: bitmap kernel, then the rows kernel (kThreadsPerRow threads per row) ----
constexpr int kPrepThreads = 256;

__global__ void __launch_bounds__(kPrepThreads) int8_outlier_bits_kernel(const Int8PrepArgs a) {
  let_next_kernel_start();  // the rows kernel may be scheduled now; it waits for this one's bitmap
  const int64_t chunks = static_cast<int64_t>(a.m) * a.k / 8;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c0 = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c0 < chunks;
       c0 += kChunksInFlight * stride) {
    uint4 q[kChunksInFlight];
#pragma unroll
    for (int u = 0; u < kChunksInFlight; ++u)
      if (c0 + u * stride < chunks) q[u] = load_chunk(a.x, c0 + u * stride);
#pragma unroll
    for (int u = 0; u < kChunksInFlight; ++u)
      if (c0 + u * stride < chunks) flag_chunk(a, c0 + u * stride, q[u], a.outlier_bits);
  }
}

// The bitmap is zero on entry: the previous call's GEMM cleared it (Int8GemmArgs::outlier_bits), which
// spares a memset launch per call. kChunks: 16-byte chunks of a row per thread, held in registers
// between the absmax and the quantization; 0 for rows too long for that (read twice).
template <int kThreadsPerRow, int kChunks>
__global__ void __launch_bounds__(kPrepThreads) int8_rows_kernel(const Int8PrepArgs a, bool with_outliers) {
  extern __shared__ uint32_t smem[];
  __shared__ float scratch[kPrepThreads / 32];
  const int words = a.k / 32;
  uint32_t* bits = smem;
  int* prefix = reinterpret_cast<int*>(smem + words);
  const int row = blockIdx.x * (kPrepThreads / kThreadsPerRow) + threadIdx.x / kThreadsPerRow;
  const int lane = threadIdx.x % kThreadsPerRow;
  uint4 q[kChunks > 0 ? kChunks : 1];
  // After the outlier scan, X may be read before the wait: it was complete when the scan kernel (launched
  // in plain stream order) started, and this kernel starts only once that one has. So the row's DRAM round
  // trip overlaps the scan. Without the scan, the kernel before this one may be what writes X.
  if constexpr (kChunks > 0) {
    if (with_outliers) load_row<kThreadsPerRow>(a, row, lane, q);
  }
  wait_for_previous_kernel();  // the bitmap (and without the scan, X) come from the kernels before this one
  let_next_kernel_start();
  if constexpr (kChunks > 0) {
    if (!with_outliers) load_row<kThreadsPerRow>(a, row, lane, q);
  }
  if (with_outliers) {
    for (int w = threadIdx.x; w < words; w += kPrepThreads) bits[w] = __ldcg(a.outlier_bits + w);
    __syncthreads();
    if (threadIdx.x < 32) bitmap_prefix(bits, words, prefix);
    __syncthreads();
    if (blockIdx.x == 0) write_outlier_list(a, bits, prefix, words);
  } else if (blockIdx.x == 0 && threadIdx.x == 0 && a.outlier_cols != nullptr) {
    a.status->outlier_count = 0;
  }
  const uint32_t* row_bits = with_outliers ? bits : nullptr;
  if constexpr (kChunks > 0) {
    quantize_row<kThreadsPerRow>(a, row, lane, row_bits, prefix, scratch, [&](auto&& visit) {
      for_each_held_chunk<kThreadsPerRow>(a, lane, q, visit);
    });
  } else {
    const int64_t row_chunk = static_cast<int64_t>(row) * (a.k / 8);
    quantize_row<kThreadsPerRow>(a, row, lane, row_bits, prefix, scratch, [&](auto&& visit) {
      for_each_row_chunk<kThreadsPerRow>(a, row_chunk, lane, visit);
    });
  }
}

size_t bitmap_smem(int k) {
  return static_cast<size_t>(k / 32) * 4 * 2 + 16;
}

// Threads per row: a whole CTA (one chunk each for K = 2048) unless the row is shorter. The prep is bound by
// its DRAM round trips: many small CTAs in flight beat fewer that loop (measured on H200: a warp per row,
// four loads in flight per thread, took 6.6 us at M = 128, K = 2048 where a CTA per row takes 3.7 us).
int threads_per_row(int k) {
  const int chunks = k / 8;
  int threads = kPrepThreads;
  while (threads > 32 && threads / 2 >= chunks) threads /= 2;
  return threads;
}

// Registers hold up to 8 chunks per thread (K <= 16384 with 256 threads per row).
constexpr int kMaxHeldChunks = 8;

template <int kThreadsPerRow, int kChunks>
void launch_rows_with(const Int8PrepArgs& a, bool with_outliers, bool dependent, cudaStream_t stream) {
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(ceil_div(a.m, kPrepThreads / kThreadsPerRow)));
  config.blockDim = dim3(kPrepThreads);
  config.dynamicSmemBytes = with_outliers ? bitmap_smem(a.k) : 0;
  config.stream = stream;
  cudaLaunchAttribute attribute = dependent_launch_attribute();
  if (dependent && dependent_launch_available()) {
    config.attrs = &attribute;
    config.numAttrs = 1;
  }
  QLLM_CUDA_CHECK(cudaLaunchKernelEx(&config, int8_rows_kernel<kThreadsPerRow, kChunks>, a, with_outliers));
}

template <int kThreadsPerRow>
void launch_rows_per_thread(const Int8PrepArgs& a, bool with_outliers, bool dependent, cudaStream_t stream) {
  const int chunks = ceil_div(a.k / 8, kThreadsPerRow);
  if (chunks <= 1) return launch_rows_with<kThreadsPerRow, 1>(a, with_outliers, dependent, stream);
  if (chunks <= 2) return launch_rows_with<kThreadsPerRow, 2>(a, with_outliers, dependent, stream);
  if (chunks <= 4) return launch_rows_with<kThreadsPerRow, 4>(a, with_outliers, dependent, stream);
  if (chunks <= kMaxHeldChunks)
    return launch_rows_with<kThreadsPerRow, kMaxHeldChunks>(a, with_outliers, dependent, stream);
  launch_rows_with<kThreadsPerRow, 0>(a, with_outliers, dependent, stream);
}

void launch_rows(const Int8PrepArgs& a, bool with_outliers, bool dependent, cudaStream_t stream) {
  switch (threads_per_row(a.k)) {  // fewer than 256 threads per row only for rows of at most 128 chunks
    case 32:
      return launch_rows_with<32, 1>(a, with_outliers, dependent, stream);
    case 64:
      return launch_rows_with<64, 1>(a, with_outliers, dependent, stream);
    case 128:
      return launch_rows_with<128, 1>(a, with_outliers, dependent, stream);
    default:
      return launch_rows_per_thread<kPrepThreads>(a, with_outliers, dependent, stream);
  }
}

}  // namespace

void launch_int8_prep(const Int8PrepArgs& a, cudaStream_t stream) {
  const bool enabled = a.threshold > 0.0f && a.threshold < 3.0e38f;
  if (enabled) {
    // As many chunks per thread as it takes for the grid to be resident at once: one chunk each over several
    // waves left too few bytes in flight (1.4 TB/s at M = 2048, K = 2048 on H200), while fewer CTAs than that
    // with several chunks each were slower at M = 512.
    static const int ctas_per_sm = [] {
      int ctas = 0;
      QLLM_CUDA_CHECK(
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, int8_outlier_bits_kernel, kPrepThreads, 0));
      return std::max(ctas, 1);
    }();
    if (a.configure_only) return;
    const int64_t chunks = static_cast<int64_t>(a.m) * a.k / 8;
    const int64_t resident_threads = multiprocessor_count() * ctas_per_sm * int64_t{kPrepThreads};
    const int64_t per_thread = std::min<int64_t>(ceil_div(chunks, resident_threads), kChunksInFlight);
    const auto blocks = static_cast<unsigned int>(ceil_div(chunks, kPrepThreads * per_thread));
    int8_outlier_bits_kernel<<<blocks, kPrepThreads, 0, stream>>>(a);
  }
  if (!a.configure_only) launch_rows(a, enabled, /*dependent=*/true, stream);
}

void launch_int8_quantize_rows(const Int8PrepArgs& a, cudaStream_t stream) {
  if (a.configure_only) return;
  launch_rows(a, /*with_outliers=*/false, /*dependent=*/false, stream);
}

}  // namespace qllm::kernels
