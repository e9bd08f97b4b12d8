// Sampling kernel (the spec: src/model/sampler.cpp; the design and arithmetic: sampling.h). One 1024-thread
// CTA per row. Passes over the row, each recomputing s_i (penalised, temperature-scaled logit) from the
// 16-bit logits: the argmax; the top-k key (4 radix passes); the fixed-point total and the top-p key (1 + 4);
// the draw (1, contiguous chunks per thread so the prefix sums run in index order).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/common/dependent_launch.cuh"
#include "kernels/common/row_ops.cuh"
#include "kernels/runtime/cuda_utils.h"
#include "kernels/sampling/counter_rng.h"
#include "kernels/sampling/sampling.h"

namespace qllm {

namespace {

using namespace kernels::ops;

constexpr int kThreads = 1024;
constexpr double kFixedOne = 17592186044416.0;  // 2^44: e_i in [0, 1] as fixed point; 2^18 of them fit 2^62

struct RowShared {
  unsigned long long histogram[256];
  unsigned long long scratch[32];
  float max_scratch[32];
  int index_scratch[32];
  unsigned long long broadcast[4];
};

// The row's view: logits, penalty bitmap, temperature.
template <typename T>
struct Row {
  const T* logits;
  const uint32_t* penalised;  // bitmap in shared memory, null when no penalty
  float penalty;
  float temperature;  // 0: unscaled (greedy pass)

  __device__ float raw(int64_t i) const { return to_f32(logits[i]); }
  __device__ float penalised_logit(int64_t i) const {
    float l = raw(i);
    if (penalised != nullptr && (penalised[i >> 5] >> (i & 31)) & 1u)
      l = l > 0.0f ? __fdiv_rn(l, penalty) : __fmul_rn(l, penalty);
    return l;
  }
  __device__ float scaled(int64_t i) const {
    const float l = penalised_logit(i);
    return temperature > 0.0f ? __fdiv_rn(l, temperature) : l;
  }
};

// Order-preserving key: a larger float has a larger key; -0 and +0 share one (the CPU compares them equal).
__device__ __forceinline__ uint32_t order_key(float s) {
  const uint32_t bits = __float_as_uint(s == 0.0f ? 0.0f : s);
  return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

__device__ __forceinline__ float key_value(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? key & 0x7fffffffu : ~key);
}

__device__ __forceinline__ unsigned long long fixed_mass(float s, float s_max) {
  const double e = exp(static_cast<double>(s) - static_cast<double>(s_max));
  return static_cast<unsigned long long>(rint(e * kFixedOne));
}

// This thread's contiguous share [begin, end) of the row: prefix sums over threads then run in index order.
__device__ __forceinline__ void thread_chunk(int64_t vocab, int64_t& begin, int64_t& end) {
  const int64_t chunk = (vocab + kThreads - 1) / kThreads;
  begin = static_cast<int64_t>(threadIdx.x) * chunk;
  if (begin > vocab) begin = vocab;
  end = begin + chunk > vocab ? vocab : begin + chunk;
}

// Largest value, lowest index on ties, over the block; every thread gets both.
__device__ void block_argmax(float& value, int& index, RowShared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  auto combine = [](float& v, int& i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
  };
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    combine(value, index, __shfl_xor_sync(kFullMask, value, o), __shfl_xor_sync(kFullMask, index, o));
  __syncthreads();
  if (lane == 0) sh.max_scratch[warp] = value, sh.index_scratch[warp] = index;
  __syncthreads();
  value = sh.max_scratch[lane];  // kThreads / 32 == 32 warps
  index = sh.index_scratch[lane];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    combine(value, index, __shfl_xor_sync(kFullMask, value, o), __shfl_xor_sync(kFullMask, index, o));
}

// Exclusive prefix sum over the threads in thread order; `total` gets the sum of all.
__device__ unsigned long long block_exclusive_scan(unsigned long long v, unsigned long long& total,
                                                   RowShared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned long long inclusive = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long other = __shfl_up_sync(kFullMask, inclusive, o);
    if (lane >= o) inclusive += other;
  }
  __syncthreads();
  if (lane == 31) sh.scratch[warp] = inclusive;
  __syncthreads();
  unsigned long long warp_total = sh.scratch[lane], warp_inclusive = warp_total;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long other = __shfl_up_sync(kFullMask, warp_inclusive, o);
    if (lane >= o) warp_inclusive += other;
  }
  total = __shfl_sync(kFullMask, warp_inclusive, 31);
  const unsigned long long warp_prefix = __shfl_sync(kFullMask, warp_inclusive - warp_total, warp);
  return warp_prefix + inclusive - v;
}

// Radix selection: the largest key K with sum(weight_i : key_i >= K, candidate i) >= target (weight 1 for
// a count). Returns K; `above` gets the weight of the candidates with key > K, `at` that of key == K.
template <typename T, typename Candidate, typename Weight>
__device__ uint32_t select_key(const Row<T>& row, int64_t vocab, double target, Candidate candidate,
                               Weight weight, unsigned long long& above, unsigned long long& at,
                               RowShared& sh) {
  uint32_t prefix = 0;
  above = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    const uint32_t high_mask = shift == 24 ? 0u : ~((1u << (shift + 8)) - 1u);
    for (int b = threadIdx.x; b < 256; b += kThreads) sh.histogram[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float s = row.scaled(i);
      if (!candidate(i, s)) continue;
      const uint32_t key = order_key(s);
      if ((key & high_mask) != prefix) continue;
      const unsigned long long w = weight(s);
      if (w != 0) atomicAdd(&sh.histogram[(key >> shift) & 0xffu], w);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      unsigned long long cumulative = above;
      int digit = 0;
      for (int d = 255; d >= 0; --d) {
        if (static_cast<double>(cumulative + sh.histogram[d]) >= target) {
          digit = d;
          break;
        }
        cumulative += sh.histogram[d];
      }
      sh.broadcast[0] = digit;
      sh.broadcast[1] = cumulative;
      sh.broadcast[2] = sh.histogram[digit];
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(sh.broadcast[0]) << shift;
    above = sh.broadcast[1];
    at = sh.broadcast[2];
    __syncthreads();
  }
  return prefix;
}

// The index of the m-th (1-based) element with key == K among candidates, in index order.
template <typename T, typename Candidate>
__device__ int64_t nth_tie_index(const Row<T>& row, int64_t vocab, uint32_t key, unsigned long long m,
                                 Candidate candidate, RowShared& sh) {
  int64_t begin, end;
  thread_chunk(vocab, begin, end);
  unsigned long long count = 0, total = 0;
  for (int64_t i = begin; i < end; ++i) {
    const float s = row.scaled(i);
    count += candidate(i, s) && order_key(s) == key;
  }
  unsigned long long seen = block_exclusive_scan(count, total, sh);
  if (threadIdx.x == 0) sh.broadcast[3] = static_cast<unsigned long long>(vocab);
  __syncthreads();
  if (seen < m && m <= seen + count) {
    for (int64_t i = begin; i < end; ++i) {
      const float s = row.scaled(i);
      if (candidate(i, s) && order_key(s) == key && ++seen == m)
        sh.broadcast[3] = static_cast<unsigned long long>(i);
    }
  }
  __syncthreads();
  return static_cast<int64_t>(sh.broadcast[3]);
}

// The token of one row (the same value in every thread), or -1 for non-finite logits.
template <typename T>
__device__ int32_t sample_row(const SampleTokensParams& p, const SamplingRowState& state, Row<T> row,
                              RowShared& sh) {
  const int64_t vocab = p.vocab;
  // The argmax after the penalty, and a check that the row is finite.
  float best = -INFINITY;
  int best_index = INT32_MAX;
  unsigned long long non_finite = 0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    non_finite += !isfinite(row.raw(i));
    const float l = row.penalised_logit(i);
    if (l > best || (l == best && i < best_index)) best = l, best_index = static_cast<int>(i);
  }
  non_finite = block_sum(non_finite, sh.scratch);
  if (non_finite != 0) return -1;
  block_argmax(best, best_index, sh);
  const float temperature = state.temperature;
  if (!(temperature > 0.0f)) return best_index;
  const float s_max = __fdiv_rn(best, temperature);
  if (!isfinite(s_max)) return best_index;  // an overflowing temperature: its limit, greedy
  row.temperature = temperature;

  // top-k: the k-th largest key; ties with it are kept.
  const bool top_k = state.top_k > 0 && state.top_k < vocab;
  unsigned long long above = 0, at = 0;
  uint32_t k_key = 0;
  if (top_k) {
    k_key = select_key(
        row, vocab, static_cast<double>(state.top_k), [](int64_t, float) { return true; },
        [](float) { return 1ull; }, above, at, sh);
  }
  auto after_top_k = [&](int64_t, float s) { return !top_k || order_key(s) >= k_key; };

  // top-p: the key where the mass in descending order reaches top_p; of the tokens at that key, the first m
  // in index order (the CPU's stable sort).
  const bool top_p = state.top_p < 1.0f;  // NaN: off
  uint32_t p_key = 0;
  int64_t last_tie = vocab;
  if (top_p) {
    unsigned long long mass = 0;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float s = row.scaled(i);
      if (after_top_k(i, s)) mass += fixed_mass(s, s_max);
    }
    mass = block_sum(mass, sh.scratch);
    const double target = static_cast<double>(state.top_p) * static_cast<double>(mass);
    p_key = select_key(
        row, vocab, target, after_top_k, [&](float s) { return fixed_mass(s, s_max); }, above, at, sh);
    if (at > 0) {
      // Every token at p_key has the same mass: the first m of them reach the target.
      const unsigned long long each = fixed_mass(key_value(p_key), s_max);
      const unsigned long long ties = at / each;
      unsigned long long m =
          static_cast<unsigned long long>(ceil((target - static_cast<double>(above)) / each));
      m = max(1ull, min(m, ties));
      if (m < ties) last_tie = nth_tie_index(row, vocab, p_key, m, after_top_k, sh);
    }
  }
  const double min_p = state.min_p > 0.0f ? static_cast<double>(state.min_p) : 0.0;  // NaN: off
  auto kept_mass = [&](int64_t i, float s) -> unsigned long long {
    if (!after_top_k(i, s)) return 0;
    const uint32_t key = order_key(s);
    if (top_p && !(key > p_key || (key == p_key && i <= last_tie))) return 0;
    const double e = exp(static_cast<double>(s) - static_cast<double>(s_max));
    if (e < min_p) return 0;
    return static_cast<unsigned long long>(rint(e * kFixedOne));
  };

  // The draw: the first token (index order) whose cumulative mass exceeds u · total, exactly: with
  // u = x / 2^24, cumulative · 2^24 > x · total in 128-bit integers.
  int64_t begin, end;
  thread_chunk(vocab, begin, end);
  unsigned long long mine = 0, total = 0;
  for (int64_t i = begin; i < end; ++i) mine += kept_mass(i, row.scaled(i));
  unsigned long long cumulative = block_exclusive_scan(mine, total, sh);
  const unsigned __int128 goal =
      static_cast<unsigned __int128>(counter_uniform24(state.seed, state.step)) * total;
  if (threadIdx.x == 0) sh.broadcast[3] = static_cast<unsigned long long>(best_index);
  __syncthreads();
  const auto scaled_up = [](unsigned long long v) { return static_cast<unsigned __int128>(v) << 24; };
  if (mine != 0 && scaled_up(cumulative) <= goal && goal < scaled_up(cumulative + mine)) {
    for (int64_t i = begin; i < end; ++i) {
      cumulative += kept_mass(i, row.scaled(i));
      if (goal < scaled_up(cumulative)) {
        sh.broadcast[3] = static_cast<unsigned long long>(i);
        break;
      }
    }
  }
  __syncthreads();
  return static_cast<int32_t>(sh.broadcast[3]);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) sample_tokens_kernel(SampleTokensParams p) {
  extern __shared__ uint32_t penalised[];  // ceil(vocab / 32) words
  __shared__ RowShared sh;
  kernels::wait_for_previous_kernel();  // launched as a dependent: the logits come from the lm_head before
  const int64_t r = blockIdx.x;
  const SamplingRowState state = p.row_state[r];
  const float penalty = state.repetition_penalty;
  const bool penalise = p.window > 0 && penalty > 0.0f && penalty != 1.0f;  // NaN fails `> 0`: off
  if (penalise) {
    for (int64_t w = threadIdx.x; w < (p.vocab + 31) / 32; w += kThreads) penalised[w] = 0;
    __syncthreads();
    for (int64_t j = threadIdx.x; j < p.window; j += kThreads) {
      const int32_t id = p.recent_ids[r * p.window + j];
      if (id >= 0 && id < p.vocab) atomicOr(&penalised[id >> 5], 1u << (id & 31));
    }
    __syncthreads();
  }
  const Row<T> row{static_cast<const T*>(p.logits) + r * p.vocab, penalise ? penalised : nullptr, penalty,
                   0.0f};
  const int32_t token = sample_row(p, state, row, sh);
  if (threadIdx.x == 0) {
    p.tokens[r] = token;
    p.row_state[r].step = state.step + 1;
    if (token < 0 && p.error_flag != nullptr) atomicOr(p.error_flag, 1);
  }
}

template <typename T>
void enqueue_typed(const SampleTokensParams& p, cudaStream_t stream) {
  const size_t bitmap_bytes = static_cast<size_t>((p.vocab + 31) / 32) * sizeof(uint32_t);  // <= 32 KiB
  kernels::launch_dependent(sample_tokens_kernel<T>, dim3(static_cast<unsigned>(p.rows)), dim3(kThreads),
                            bitmap_bytes, stream, p);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

namespace detail {

void enqueue_sample_tokens(const SampleTokensParams& p, CUstream_st* stream) {
  if (p.dtype == DType::BF16) {
    enqueue_typed<__nv_bfloat16>(p, stream);
  } else {
    enqueue_typed<__half>(p, stream);
  }
}

}  // namespace detail
}  // namespace qllm
