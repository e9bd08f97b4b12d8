// INT4 quantize/dequantize kernels. The arithmetic is src/quant/int4_math.h, shared with the CPU reference;
// this file only decides which threads do it. Three paths:
//  - warp path: group sizes 8 * V * TPG (powers of two 8..4096). A group is TPG consecutive lanes, each lane
//    holding V 16-byte vectors in registers: one read of the weights, one write of the nibbles.
//  - block path: any other even group size (and rows longer than 4096), and rows whose last group is partial
//    (g does not divide K: groups are no longer equal slices of the flat array): one block per group, which
//    finds its row range itself; the search passes re-read the group, still in L1/L2 from the first pass.
//  - global path: one scale for everything: a grid-wide min/max, then (with a search) grid-wide error sums
//    per candidate, a one-thread selection, and a streaming quantize with the chosen scale.
#include <cfloat>
#include <cstdint>

#include <algorithm>
#include <type_traits>

#include "kernels/quantize/quantize_int4_launch.h"
#include "quant/int4_math.h"

namespace qllm::kernels {

using int4::GroupParams;
using int4::GroupStats;
using SearchConfig = Int4SearchConfig;
static_assert(Int4QuantizeScratch::kMaxCandidates == int4::kCoarseCandidates);

namespace {

constexpr int kBlockThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;

template <bool kBf16>
__device__ __forceinline__ float element_to_float(uint32_t bits16) {
  if constexpr (kBf16) return __uint_as_float(bits16 << 16);
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
}

// The 8 weights of a 16-byte vector, in memory order.
template <bool kBf16>
__device__ __forceinline__ void unpack8(const uint4& v, float (&out)[8]) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = element_to_float<kBf16>(words[i] & 0xffffu);
    out[2 * i + 1] = element_to_float<kBf16>(words[i] >> 16);
  }
}

// Weights are read once: keep them out of L1 and mark them evict-first in L2.
__device__ __forceinline__ uint4 load_streaming(const uint4* p) {
  return __ldcs(p);
}

// Order-preserving map of floats to unsigned ints, for atomicMin/atomicMax on floats.
__device__ __forceinline__ unsigned int float_key(float f) {
  const unsigned int u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_float(unsigned int k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

__device__ __forceinline__ void report_nonfinite(Int4QuantizeScratch* s, int64_t flat) {
  atomicMin(&s->first_nonfinite, static_cast<unsigned long long>(flat));
}

// Sum over the TPG lanes of a group (butterfly: every lane ends with the total).
template <int TPG, typename T>
__device__ __forceinline__ T segment_sum(T v) {
#pragma unroll
  for (int o = TPG / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
// NaN-propagating min/max (fminf/fmaxf would drop a NaN and hide it from the check).
__device__ __forceinline__ float min_nan(float a, float b) {
  return (a != a || b != b) ? __int_as_float(0x7fffffff) : fminf(a, b);
}
__device__ __forceinline__ float max_nan(float a, float b) {
  return (a != a || b != b) ? __int_as_float(0x7fffffff) : fmaxf(a, b);
}

template <int TPG>
__device__ __forceinline__ GroupStats segment_minmax(GroupStats s) {
#pragma unroll
  for (int o = TPG / 2; o > 0; o >>= 1) {
    s.min = min_nan(s.min, __shfl_xor_sync(kFullMask, s.min, o));
    s.max = max_nan(s.max, __shfl_xor_sync(kFullMask, s.max, o));
  }
  return s;
}

// Range of V 16-byte vectors with packed NaN-propagating min/max on 16-bit pairs (HMNMX2).
template <bool kBf16, int V>
__device__ __forceinline__ GroupStats packed_range(const uint4 (&vec)[V]) {
  using Pair = std::conditional_t<kBf16, __nv_bfloat162, __half2>;
  auto as_pair = [](uint32_t w) { return *reinterpret_cast<Pair*>(&w); };
  Pair lo = as_pair(vec[0].x), hi = lo;
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const uint32_t words[4] = {vec[v].x, vec[v].y, vec[v].z, vec[v].w};
#pragma unroll
    for (int i = (v == 0 ? 1 : 0); i < 4; ++i) {
      lo = __hmin2_nan(lo, as_pair(words[i]));
      hi = __hmax2_nan(hi, as_pair(words[i]));
    }
  }
  const uint32_t lo_bits = *reinterpret_cast<uint32_t*>(&lo), hi_bits = *reinterpret_cast<uint32_t*>(&hi);
  return {min_nan(element_to_float<kBf16>(lo_bits & 0xffffu), element_to_float<kBf16>(lo_bits >> 16)),
          max_nan(element_to_float<kBf16>(hi_bits & 0xffffu), element_to_float<kBf16>(hi_bits >> 16))};
}

// Chooses the clipping percent of one group. `error_of(params)` returns the group's total fixed-point error
// (already reduced over all of the group's threads), so every thread of the group returns the same percent.
// Mirrors search_percent() of the CPU reference: same candidates, same order, same tie rule.
template <typename ErrorOf>
__device__ __forceinline__ int choose_percent(GroupStats stats, SearchConfig cfg, ErrorOf&& error_of) {
  if (cfg.mode == 0) return 100;
  unsigned long long best_error = ~0ull;
  int best_coarse = 100;
#pragma unroll 1
  for (int i = 0; i < int4::kCoarseCandidates; ++i) {
    const int p = int4::coarse_percent(i);
    const unsigned long long e = error_of(int4::group_params(stats, p, cfg.zero_point, cfg.bf16_scale));
    if (e < best_error) best_error = e, best_coarse = p;
  }
  best_error = ~0ull;
  int best = int4::fine_percent(best_coarse, 0);
#pragma unroll 1
  for (int i = 0; i < int4::kFineCandidates; ++i) {
    const int p = int4::fine_percent(best_coarse, i);
    const unsigned long long e = error_of(int4::group_params(stats, p, cfg.zero_point, cfg.bf16_scale));
    if (e < best_error) best_error = e, best = p;
  }
  return best;
}

// ---- warp path
// ---------------------------------------------------------------------------------------------

// Quantizes one group held in registers by TPG lanes (V 16-byte vectors each) and stores it. Every lane of
// the warp must call this (the reductions shuffle across the warp); lanes of inactive groups store nothing.
template <bool kBf16, int V, int TPG>
__device__ __forceinline__ void quantize_group_in_registers(
    const uint4 (&vec)[V], int64_t group, bool active, int t, SearchConfig cfg, uint32_t* __restrict__ packed,
    uint16_t* __restrict__ scales, uint8_t* __restrict__ zeros, Int4QuantizeScratch* scratch) {
  constexpr int kGroupVectors = V * TPG;
  // Stage 1: range of the group with packed 16-bit min/max that propagate NaN (one instruction per pair),
  // so a NaN or Inf anywhere in the group shows in its range and is then located on a slow path.
  const GroupStats stats_local = packed_range<kBf16, V>(vec);
  GroupStats stats = segment_minmax<TPG>(stats_local);
  if (!(fabsf(stats.min) <= FLT_MAX && fabsf(stats.max) <= FLT_MAX) && active) {
    for (int v = 0; v < V; ++v) {
      float x[8];
      unpack8<kBf16>(vec[v], x);
      for (int j = 0; j < 8; ++j) {
        if (!(fabsf(x[j]) <= FLT_MAX))
          report_nonfinite(scratch, (group * kGroupVectors + v * TPG + t) * 8 + j);
      }
    }
  }

  // Stage 2: scale search over the registers (no memory traffic).
  const float normalizer = int4::error_normalizer(stats);
  const bool squared = cfg.mode == 1;
  const int percent = choose_percent(stats, cfg, [&](const GroupParams& p) {
    unsigned long long e = 0;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      float x[8];
      unpack8<kBf16>(vec[v], x);
#pragma unroll
      for (int j = 0; j < 8; ++j) e += int4::error_fixed_point(x[j], p, normalizer, squared);
    }
    return segment_sum<TPG>(e);
  });

  // Stage 3: quantize and store 8 nibbles per vector as one 32-bit word.
  if (!active) return;
  if (t == 0 && !isfinite(int4::group_params(stats, 100, cfg.zero_point, cfg.bf16_scale).scale)) {
    atomicMin(&scratch->first_overflow, static_cast<unsigned long long>(group));
  }
  const GroupParams params = int4::group_params(stats, percent, cfg.zero_point, cfg.bf16_scale);
#pragma unroll
  for (int v = 0; v < V; ++v) {
    float x[8];
    unpack8<kBf16>(vec[v], x);
    uint32_t word = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) word |= static_cast<uint32_t>(int4::quantize_value(x[j], params)) << (4 * j);
    packed[group * kGroupVectors + v * TPG + t] = word;
  }
  if (t == 0) {
    scales[group] = params.scale_bits;
    if (cfg.zero_point) zeros[group] = params.zero;
  }
}

// Group g covers 16-byte vectors [g * V * TPG, (g + 1) * V * TPG) of 8 weights; lane t of the group holds
// vectors v * TPG + t (v < V), so each load instruction of a warp reads 512 contiguous bytes. A warp handles
// R "slots" of 32 / TPG groups and issues all R * V loads before using any: one 16-byte load per thread does
// not keep enough bytes in flight to reach the memory bandwidth.
template <bool kBf16, int V, int TPG, int R>
__global__ void __launch_bounds__(kBlockThreads)
    quantize_warp_kernel(const uint4* __restrict__ weights, int64_t num_groups, SearchConfig cfg,
                         uint32_t* __restrict__ packed, uint16_t* __restrict__ scales,
                         uint8_t* __restrict__ zeros, Int4QuantizeScratch* scratch) {
  constexpr int kGroupsPerSlot = 32 / TPG;
  constexpr int kGroupVectors = V * TPG;
  const int lane = threadIdx.x % 32;
  const int t = lane % TPG;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * kBlockThreads + threadIdx.x) / 32;
  const int64_t first_group = warp * R * kGroupsPerSlot + lane / TPG;

  uint4 vec[R][V];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t group = first_group + r * kGroupsPerSlot;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      // Whole groups are active or not, so the shuffles of a group never mix active and inactive lanes.
      vec[r][v] = group < num_groups ? load_streaming(weights + group * kGroupVectors + v * TPG + t)
                                     : make_uint4(0, 0, 0, 0);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t group = first_group + r * kGroupsPerSlot;
    quantize_group_in_registers<kBf16, V, TPG>(vec[r], group, group < num_groups, t, cfg, packed, scales,
                                               zeros, scratch);
  }
}

// ---- chunked access for the block and global paths
// --------------------------------------------------------- C weights at a time: 8 (one 16-byte load, one
// 32-bit store of nibbles) when sizes and alignment allow, else 2 (one 32-bit load, one byte of nibbles).

template <bool kBf16, int C>
__device__ __forceinline__ void load_chunk(const void* base, int64_t chunk, float (&x)[C]) {
  if constexpr (C == 8) {
    unpack8<kBf16>(static_cast<const uint4*>(base)[chunk], x);
  } else {
    const uint32_t word = static_cast<const uint32_t*>(base)[chunk];
    x[0] = element_to_float<kBf16>(word & 0xffffu);
    x[1] = element_to_float<kBf16>(word >> 16);
  }
}

template <int C>
__device__ __forceinline__ void store_chunk(uint8_t* packed, int64_t chunk, const float (&x)[C],
                                            const GroupParams& p) {
  uint32_t word = 0;
#pragma unroll
  for (int j = 0; j < C; ++j) word |= static_cast<uint32_t>(int4::quantize_value(x[j], p)) << (4 * j);
  if constexpr (C == 8) {
    reinterpret_cast<uint32_t*>(packed)[chunk] = word;
  } else {
    packed[chunk] = static_cast<uint8_t>(word);
  }
}

template <int C>
__device__ __forceinline__ void check_chunk(const float (&x)[C], int64_t first_flat, Int4QuantizeScratch* s) {
#pragma unroll
  for (int j = 0; j < C; ++j) {
    if (!(fabsf(x[j]) <= FLT_MAX)) report_nonfinite(s, first_flat + j);
  }
}

template <int C>
__device__ __forceinline__ void accumulate_range(const float (&x)[C], GroupStats& stats) {
#pragma unroll
  for (int j = 0; j < C; ++j) {
    stats.min = fminf(stats.min, x[j]);
    stats.max = fmaxf(stats.max, x[j]);
  }
}

template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T* shared) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(kFullMask, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // `shared` may still be read by the previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = shared[0];
  for (int w = 1; w < kBlockThreads / 32; ++w) v = op(v, shared[w]);
  return v;
}

__device__ __forceinline__ GroupStats block_minmax(GroupStats stats, float* shared) {
  stats.min = block_reduce(
      stats.min, [](float a, float b) { return fminf(a, b); }, shared);
  stats.max = block_reduce(
      stats.max, [](float a, float b) { return fmaxf(a, b); }, shared);
  return stats;
}

// ---- block path
// ---------------------------------------------------------------------------------------------- One block
// per group, any even group size, partial last groups included (GroupLayout::first_flat / size: group i of
// row r starts at r * cols + i * g and holds min(g, cols - i * g) weights). The search passes re-read the
// group from L1/L2.
template <bool kBf16, int C>
__global__ void __launch_bounds__(kBlockThreads)
    quantize_block_kernel(const void* __restrict__ weights, int64_t group_elems, int64_t cols,
                          int64_t groups_per_row, SearchConfig cfg, uint8_t* __restrict__ packed,
                          uint16_t* __restrict__ scales, uint8_t* __restrict__ zeros,
                          Int4QuantizeScratch* scratch) {
  __shared__ float shared_f[kBlockThreads / 32];
  __shared__ unsigned long long shared_u[kBlockThreads / 32];
  const int64_t group = blockIdx.x;
  const int64_t row = group / groups_per_row, begin_col = (group % groups_per_row) * group_elems;
  // C divides both the start and the size (the host picks C = 8 only when 8 divides K and g).
  const int64_t chunks = min(group_elems, cols - begin_col) / C;
  const int64_t first_chunk = (row * cols + begin_col) / C;

  GroupStats stats{FLT_MAX, -FLT_MAX};
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < chunks; i += kBlockThreads) {
    float x[C];
    load_chunk<kBf16, C>(weights, first_chunk + i, x);
    check_chunk<C>(x, (first_chunk + i) * C, scratch);
    accumulate_range<C>(x, stats);
  }
  stats = block_minmax(stats, shared_f);

  const float normalizer = int4::error_normalizer(stats);
  const bool squared = cfg.mode == 1;
  const int percent = choose_percent(stats, cfg, [&](const GroupParams& p) {
    unsigned long long e = 0;
    for (int64_t i = threadIdx.x; i < chunks; i += kBlockThreads) {
      float x[C];
      load_chunk<kBf16, C>(weights, first_chunk + i, x);
#pragma unroll
      for (int j = 0; j < C; ++j) e += int4::error_fixed_point(x[j], p, normalizer, squared);
    }
    return block_reduce(
        e, [](unsigned long long a, unsigned long long b) { return a + b; }, shared_u);
  });

  const GroupParams params = int4::group_params(stats, percent, cfg.zero_point, cfg.bf16_scale);
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < chunks; i += kBlockThreads) {
    float x[C];
    load_chunk<kBf16, C>(weights, first_chunk + i, x);
    store_chunk<C>(packed, first_chunk + i, x, params);
  }
  if (threadIdx.x == 0) {
    if (!isfinite(int4::group_params(stats, 100, cfg.zero_point, cfg.bf16_scale).scale)) {
      atomicMin(&scratch->first_overflow, static_cast<unsigned long long>(group));
    }
    scales[group] = params.scale_bits;
    if (cfg.zero_point) zeros[group] = params.zero;
  }
}

// ---- global path
// -----------------------------------------------------------------------------------------------

#define QLLM_GRID_STRIDE(i, n)                                                              \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kBlockThreads) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * kBlockThreads)

template <bool kBf16, int C>
__global__ void __launch_bounds__(kBlockThreads)
    global_minmax_kernel(const void* __restrict__ weights, int64_t chunks, Int4QuantizeScratch* scratch) {
  __shared__ float shared_f[kBlockThreads / 32];
  GroupStats stats{FLT_MAX, -FLT_MAX};
#pragma unroll 4
  QLLM_GRID_STRIDE(i, chunks) {
    float x[C];
    load_chunk<kBf16, C>(weights, i, x);
    check_chunk<C>(x, i * C, scratch);
    accumulate_range<C>(x, stats);
  }
  stats = block_minmax(stats, shared_f);
  if (threadIdx.x == 0) {
    atomicMin(&scratch->min_key, float_key(stats.min));
    atomicMax(&scratch->max_key, float_key(stats.max));
  }
}

__device__ __forceinline__ GroupStats global_stats(const Int4QuantizeScratch* s) {
  return {key_float(s->min_key), key_float(s->max_key)};
}

// Candidate i of a search stage: stage 0 is the coarse pass, stage 1 the fine pass around its winner.
__device__ __forceinline__ int stage_percent(int stage, int i, const Int4QuantizeScratch* s) {
  return stage == 0 ? int4::coarse_percent(i) : int4::fine_percent(s->best_coarse, i);
}

// Error sums of every candidate of one stage over the whole matrix (exact integer atomics).
template <bool kBf16, int C, int kCandidates>
__global__ void __launch_bounds__(kBlockThreads)
    global_error_kernel(const void* __restrict__ weights, int64_t chunks, SearchConfig cfg, int stage,
                        Int4QuantizeScratch* scratch) {
  __shared__ unsigned long long shared_u[kBlockThreads / 32];
  const GroupStats stats = global_stats(scratch);
  const float normalizer = int4::error_normalizer(stats);
  GroupParams params[kCandidates];
#pragma unroll
  for (int c = 0; c < kCandidates; ++c) {
    params[c] = int4::group_params(stats, stage_percent(stage, c, scratch), cfg.zero_point, cfg.bf16_scale);
  }
  unsigned long long e[kCandidates] = {};
  QLLM_GRID_STRIDE(i, chunks) {
    float x[C];
    load_chunk<kBf16, C>(weights, i, x);
#pragma unroll
    for (int c = 0; c < kCandidates; ++c) {
#pragma unroll
      for (int j = 0; j < C; ++j) e[c] += int4::error_fixed_point(x[j], params[c], normalizer, cfg.mode == 1);
    }
  }
#pragma unroll
  for (int c = 0; c < kCandidates; ++c) {
    const unsigned long long total = block_reduce(
        e[c], [](unsigned long long a, unsigned long long b) { return a + b; }, shared_u);
    if (threadIdx.x == 0) atomicAdd(&scratch->sums[c], total);
  }
}

// One thread: picks the stage's winner (first minimum, like the CPU), clears the sums for the next stage,
// and after the last stage writes the single scale and zero point.
__global__ void global_select_kernel(int stage, int candidates, SearchConfig cfg, uint16_t* scales,
                                     uint8_t* zeros, Int4QuantizeScratch* scratch) {
  int best = 100;  // no search: the plain range
  if (cfg.mode != 0) {
    best = stage_percent(stage, 0, scratch);
    unsigned long long best_error = ~0ull;
    for (int c = 0; c < candidates; ++c) {
      if (scratch->sums[c] < best_error)
        best_error = scratch->sums[c], best = stage_percent(stage, c, scratch);
      scratch->sums[c] = 0;
    }
  }
  const GroupStats stats = global_stats(scratch);
  if (stage == 0 && cfg.mode != 0) {
    scratch->best_coarse = best;
    return;
  }
  if (!isfinite(int4::group_params(stats, 100, cfg.zero_point, cfg.bf16_scale).scale))
    scratch->first_overflow = 0;
  const GroupParams p = int4::group_params(stats, best, cfg.zero_point, cfg.bf16_scale);
  scales[0] = p.scale_bits;
  if (cfg.zero_point) zeros[0] = p.zero;
}

// Streams the whole matrix with the one stored scale.
template <bool kBf16, int C>
__global__ void __launch_bounds__(kBlockThreads)
    global_quantize_kernel(const void* __restrict__ weights, int64_t chunks, SearchConfig cfg,
                           const uint16_t* scales, const uint8_t* zeros, uint8_t* __restrict__ packed) {
  GroupParams p;
  p.scale_bits = scales[0];
  p.scale = int4::scale_bits_to_float(p.scale_bits, cfg.bf16_scale);
  p.zero = cfg.zero_point ? zeros[0] : int4::kSymmetricZero;
  p.inv_scale = (p.scale > 0.0f && p.scale <= 3.0e38f) ? __fdiv_rn(1.0f, p.scale) : 0.0f;
#pragma unroll 4
  QLLM_GRID_STRIDE(i, chunks) {
    float x[C];
    load_chunk<kBf16, C>(weights, i, x);
    store_chunk<C>(packed, i, x, p);
  }
}

// ---- dequantize
// ------------------------------------------------------------------------------------------------

// groups_per_row 0: one group (GLOBAL); otherwise group (row, col / group_elems), partial last groups
// included (GroupLayout::group_of).
template <bool kBf16Out>
__global__ void __launch_bounds__(kBlockThreads)
    dequantize_kernel(const uint8_t* __restrict__ packed, const uint16_t* __restrict__ scales,
                      const uint8_t* __restrict__ zeros, const uint16_t* __restrict__ mins, int64_t numel,
                      int64_t cols, int64_t group_elems, int64_t groups_per_row, bool bf16_scale,
                      uint16_t* __restrict__ out) {
  // Each thread: 8 weights (4 packed bytes in, 16 bytes out); a partial last chunk goes element by element.
  const int64_t chunk = blockIdx.x * static_cast<int64_t>(kBlockThreads) + threadIdx.x;
  const int64_t first = chunk * 8;
  if (first >= numel) return;
  auto value = [&](int64_t flat, uint8_t nibble) -> uint16_t {
    const int64_t g = groups_per_row == 0 ? 0 : flat / cols * groups_per_row + flat % cols / group_elems;
    const float scale = int4::scale_bits_to_float(scales[g], bf16_scale);
    const float w =
        mins ? int4::dequantize_value_min(nibble, scale, int4::scale_bits_to_float(mins[g], bf16_scale))
             : int4::dequantize_value(nibble, scale, zeros ? zeros[g] : int4::kSymmetricZero);
    if constexpr (kBf16Out) return __bfloat16_as_ushort(__float2bfloat16_rn(w));
    return __half_as_ushort(__float2half_rn(w));
  };
  if (first + 8 <= numel) {
    const uint32_t word = *reinterpret_cast<const uint32_t*>(packed + first / 2);
    uint32_t h[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      h[j] = value(first + 2 * j, (word >> (8 * j)) & 0xf) |
             (static_cast<uint32_t>(value(first + 2 * j + 1, (word >> (8 * j + 4)) & 0xf)) << 16);
    }
    *reinterpret_cast<uint4*>(out + first) = make_uint4(h[0], h[1], h[2], h[3]);
  } else {
    for (int64_t flat = first; flat < numel; ++flat) {
      const uint8_t byte = packed[flat / 2];
      out[flat] = value(flat, (flat & 1) ? byte >> 4 : byte & 0xf);
    }
  }
}

unsigned int grid_for(int64_t work_items) {
  const int64_t blocks = (work_items + kBlockThreads - 1) / kBlockThreads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > 65535 * 32 ? 65535 * 32 : blocks));
}

template <bool kBf16, int V, int TPG>
void launch_warp(const void* w, int64_t num_groups, SearchConfig cfg, Int4DeviceView out,
                 Int4QuantizeScratch* s, cudaStream_t stream) {
  constexpr int R = V >= 4 ? 1 : 4 / V;  // four 16-byte loads in flight per thread
  constexpr int kGroupsPerBlock = (kBlockThreads / 32) * R * (32 / TPG);
  const auto blocks = static_cast<unsigned int>((num_groups + kGroupsPerBlock - 1) / kGroupsPerBlock);
  quantize_warp_kernel<kBf16, V, TPG, R><<<blocks, kBlockThreads, 0, stream>>>(
      static_cast<const uint4*>(w), num_groups, cfg, reinterpret_cast<uint32_t*>(out.packed), out.scales,
      out.zeros, s);
}

// The warp path for group sizes 8..4096 that are powers of two; false when the size has no instantiation.
template <bool kBf16>
bool try_launch_warp(const void* w, int64_t group_elems, int64_t num_groups, SearchConfig cfg,
                     Int4DeviceView out, Int4QuantizeScratch* s, cudaStream_t stream) {
  switch (group_elems) {
    case 8:
      launch_warp<kBf16, 1, 1>(w, num_groups, cfg, out, s, stream);
      return true;
    case 16:
      launch_warp<kBf16, 1, 2>(w, num_groups, cfg, out, s, stream);
      return true;
    case 32:
      launch_warp<kBf16, 1, 4>(w, num_groups, cfg, out, s, stream);
      return true;
    case 64:
      launch_warp<kBf16, 1, 8>(w, num_groups, cfg, out, s, stream);
      return true;
    case 128:
      launch_warp<kBf16, 1, 16>(w, num_groups, cfg, out, s, stream);
      return true;
    case 256:
      launch_warp<kBf16, 1, 32>(w, num_groups, cfg, out, s, stream);
      return true;
    case 512:
      launch_warp<kBf16, 2, 32>(w, num_groups, cfg, out, s, stream);
      return true;
    case 1024:
      launch_warp<kBf16, 4, 32>(w, num_groups, cfg, out, s, stream);
      return true;
    case 2048:
      launch_warp<kBf16, 8, 32>(w, num_groups, cfg, out, s, stream);
      return true;
    case 4096:
      launch_warp<kBf16, 16, 32>(w, num_groups, cfg, out, s, stream);
      return true;
    default:
      return false;
  }
}

template <bool kBf16, int C>
void launch_global(const void* w, int64_t numel, SearchConfig cfg, Int4DeviceView out, Int4QuantizeScratch* s,
                   int multiprocessors, cudaStream_t stream) {
  const int64_t chunks = numel / C;
  const unsigned int grid = std::min<unsigned int>(grid_for(chunks), multiprocessors * 8);
  global_minmax_kernel<kBf16, C><<<grid, kBlockThreads, 0, stream>>>(w, chunks, s);
  if (cfg.mode != 0) {
    global_error_kernel<kBf16, C, int4::kCoarseCandidates>
        <<<grid, kBlockThreads, 0, stream>>>(w, chunks, cfg, 0, s);
    global_select_kernel<<<1, 1, 0, stream>>>(0, int4::kCoarseCandidates, cfg, out.scales, out.zeros, s);
    global_error_kernel<kBf16, C, int4::kFineCandidates>
        <<<grid, kBlockThreads, 0, stream>>>(w, chunks, cfg, 1, s);
  }
  global_select_kernel<<<1, 1, 0, stream>>>(1, int4::kFineCandidates, cfg, out.scales, out.zeros, s);
  global_quantize_kernel<kBf16, C>
      <<<grid, kBlockThreads, 0, stream>>>(w, chunks, cfg, out.scales, out.zeros, out.packed);
}

}  // namespace

void launch_quantize_int4(const void* w, bool bf16_weights, int64_t rows, int64_t cols, GroupLayout layout,
                          Granularity granularity, Int4SearchConfig cfg, Int4DeviceView out,
                          Int4QuantizeScratch* s, int multiprocessors, cudaStream_t stream) {
  // 16-byte chunks when every group (or the whole matrix) is a multiple of 8 weights and starts on one (with
  // partial groups both the group size and K), and the pointer allows.
  const bool wide = is_aligned(w, 16) && is_aligned(out.packed, 4) &&
                    (granularity == Granularity::Global
                         ? (rows * cols) % 8 == 0
                         : layout.group_elems % 8 == 0 && (layout.contiguous() || cols % 8 == 0));
  auto launch = [&]<bool kBf16>() {
    if (granularity == Granularity::Global) {
      if (wide) {
        launch_global<kBf16, 8>(w, rows * cols, cfg, out, s, multiprocessors, stream);
      } else {
        launch_global<kBf16, 2>(w, rows * cols, cfg, out, s, multiprocessors, stream);
      }
    } else if (wide && layout.contiguous() &&
               try_launch_warp<kBf16>(w, layout.group_elems, layout.num_groups, cfg, out, s, stream)) {
      return;  // the warp path takes groups as equal slices of the flat array: whole groups only
    } else if (wide) {
      quantize_block_kernel<kBf16, 8>
          <<<static_cast<unsigned int>(layout.num_groups), kBlockThreads, 0, stream>>>(
              w, layout.group_elems, cols, layout.groups_per_row, cfg, out.packed, out.scales, out.zeros, s);
    } else {
      quantize_block_kernel<kBf16, 2>
          <<<static_cast<unsigned int>(layout.num_groups), kBlockThreads, 0, stream>>>(
              w, layout.group_elems, cols, layout.groups_per_row, cfg, out.packed, out.scales, out.zeros, s);
    }
  };
  if (bf16_weights) {
    launch.template operator()<true>();
  } else {
    launch.template operator()<false>();
  }
}

void launch_dequantize_int4(const uint8_t* packed, const uint16_t* scales, const uint8_t* zeros,
                            const uint16_t* mins, const GroupLayout& layout, bool bf16_scale, bool bf16_out,
                            void* out, cudaStream_t stream) {
  const int64_t numel = layout.rows * layout.cols;
  const auto blocks = static_cast<unsigned int>(((numel + 7) / 8 + kBlockThreads - 1) / kBlockThreads);
  if (bf16_out) {
    dequantize_kernel<true><<<blocks, kBlockThreads, 0, stream>>>(
        packed, scales, zeros, mins, numel, layout.cols, layout.group_elems, layout.groups_per_row,
        bf16_scale, static_cast<uint16_t*>(out));
  } else {
    dequantize_kernel<false><<<blocks, kBlockThreads, 0, stream>>>(
        packed, scales, zeros, mins, numel, layout.cols, layout.group_elems, layout.groups_per_row,
        bf16_scale, static_cast<uint16_t*>(out));
  }
}

}  // namespace qllm::kernels
