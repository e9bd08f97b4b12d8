// LLM.int8() GEMM, wide path (Hopper sm_90a): Y[M, N] for large M on int8 tensor cores (wgmma s8 -> s32,
// twice the bf16 rate).
//
// Warp-specialized: warpgroups 0 and 1 are consumers, each owning 64 tokens x kBlockN weight rows of the
// output; warp 8 is the producer (one thread issues TMA copies of the int8 activation tile [128 tokens x 128
// k] and weight tile [kBlockN rows x 128 k] into a ring of shared-memory stages, 128-byte swizzled as wgmma
// reads them; while the consumers compute, the whole warp stages the epilogue's operands, the weight scales
// and outlier columns, in shared memory). A producer warp rather than a warpgroup: two CTAs of 288 threads
// per SM may hold 112 registers each (of 384, only 80: too few for a 64-register accumulator and its wgmma).
// Consumers issuing four wgmma.m64nNk32 per stage from shared memory. mbarriers hand stages back and forth:
// `full` (the copies' bytes arrived) and `empty` (both consumers' wgmmas on it finished). The epilogue scales
// by absmax_x * absmax_w / 127^2 and adds the outlier columns in fp32.
//
// Small grids split K across the CTAs of a thread-block cluster: each adds the others' int32 accumulators
// through distributed shared memory (exact, so the result does not depend on the split) and writes its share
// of the tile; no partial sums go through global memory and no reduce kernel runs.
// Launched as a dependent of the activation prep (dependent_launch.cuh): barrier setup overlaps its tail.
#include <algorithm>

#include "kernels/gemm/int8_device.cuh"
#include "kernels/gemm/int8_launch.h"

#include "kernels/common/dependent_launch.cuh"
#include "kernels/common/hopper.cuh"
#include "kernels/common/wgmma_ops.cuh"
#include "kernels/runtime/cuda_utils.h"
#include "quant/int8_math.h"

namespace qllm::kernels {

namespace {

using namespace sm90;

constexpr int kBlockM = 128;  // tokens per CTA: two consumer warpgroups x 64
constexpr int kBlockK = 128;  // bytes (int8 values) of K per stage: one 128-byte swizzle row, four k32 wgmmas
constexpr int kConsumerThreads = 256;            // two warpgroups (wgmma needs 4-warp-aligned groups)
constexpr int kThreads = kConsumerThreads + 32;  // + the producer warp

// Up to this many outlier columns are staged in shared memory for the epilogue (more, rare, are read from
// global memory there).
constexpr int kStagedOutliers = 16;

// kCtasPerSm: 1 gives the ring ~192 KB (deep pipeline for long-running tiles), 2 gives each of two CTAs per
// SM ~96 KB, so one CTA's prologue and epilogue hide under the other's MMAs (228 KB per SM, 1 KB reserved per
// CTA).
template <int kBlockN, int kCtasPerSm>
struct Config {
  static constexpr int kStageA = kBlockM * kBlockK;  // bytes
  static constexpr int kStageB = kBlockN * kBlockK;
  static constexpr int kStageBytes = kStageA + kStageB;
  static constexpr int kStages = (kCtasPerSm == 1 ? 192 : 96) * 1024 / kStageBytes;
  static constexpr int kRingBytes = kStages * kStageBytes;
  static constexpr int kBarrierBytes = 2 * kStages * 8;
  // The epilogue's operands, staged by the producer warp during the main loop (outside the ring, which the
  // producer is still filling): the outlier count, the weight rows' scales, the outlier columns'
  // activations (16-bit, [column][token]) and dequantized weights (float, [column][row]).
  static constexpr int kCountOffset = kRingBytes + kBarrierBytes;
  static constexpr int kScaleOffset = kCountOffset + 16;
  static constexpr int kOutlierXOffset = kScaleOffset + kBlockN * 4;
  static constexpr int kOutlierWOffset = kOutlierXOffset + kStagedOutliers * kBlockM * 2;
  static constexpr int kSmem = kOutlierWOffset + kStagedOutliers * kBlockN * 4 + 1024;  // + alignment
  // Split-K: the consumers' int32 accumulators, [value][thread], reuse the ring once the main loop is over.
  static constexpr int kStashBytes = 256 * (kBlockN / 2) * 4;
  static_assert(kStages >= 3 && kStashBytes <= kRingBytes);
  static_assert(kCtasPerSm * (kSmem + 1024) <= 228 * 1024);
};

// Named barrier on which the producer warp hands the staged epilogue operands to the consumers.
[[maybe_unused]] constexpr int kEpilogueBarrier = 1;

template <bool kBf16>
__device__ __forceinline__ float from_16bit(uint16_t bits) {
  if constexpr (kBf16) return __uint_as_float(static_cast<uint32_t>(bits) << 16);
  return __half2float(__ushort_as_half(bits));
}
template <bool kBf16>
__device__ __forceinline__ uint32_t pack_output(float lo, float hi) {
  if constexpr (kBf16) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
           (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16);
  }
  return __half_as_ushort(__float2half_rn(lo)) |
         (static_cast<uint32_t>(__half_as_ushort(__float2half_rn(hi))) << 16);
}

// By the producer warp (32 lanes) once it has issued every copy, while the consumers finish their last
// stages: the epilogue's operands into shared memory (see Config), so the epilogue reads no global memory but
// its activation scales. Loads are batched, three round trips: (count, scales, columns), (activations),
// (weights); each is a separate sector, and one after the other they did not finish under the ring's last
// stages (lm_head M = 512 on H200: 296 us instead of 276).
template <int kBlockN, int kCtasPerSm>
__device__ void stage_epilogue_operands(const Int8GemmArgs& a, uint8_t* smem, int token_base, int row_base) {
  using C = Config<kBlockN, kCtasPerSm>;
  static_assert(kStagedOutliers <= 32, "one outlier column per lane");
  const int lane = threadIdx.x % 32;
  const int count = a.status->outlier_count;
  float scale[kBlockN / 32];
#pragma unroll
  for (int u = 0; u < kBlockN / 32; ++u) {
    const int row = row_base + lane + 32 * u;
    scale[u] = row < a.n ? a.w_absmax[row] : 0.f;
  }
  const int column = lane < kStagedOutliers ? a.outlier_cols[lane] : 0;  // read ahead: the list's unused
                                                                         // entries are valid memory
  const int outliers = count;
  if (lane == 0) *reinterpret_cast<int*>(smem + C::kCountOffset) = outliers;
  auto* w_scale = reinterpret_cast<float*>(smem + C::kScaleOffset);
#pragma unroll
  for (int u = 0; u < kBlockN / 32; ++u) w_scale[lane + 32 * u] = scale[u];
  if (outliers == 0 || outliers > kStagedOutliers) return;
  constexpr int kBatch = 16;  // loads in flight per lane
  auto* staged_x = reinterpret_cast<uint16_t*>(smem + C::kOutlierXOffset);
  for (int base = 0; base < outliers * kBlockM; base += 32 * kBatch) {
    uint16_t v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = base + lane + 32 * u, token = token_base + i % kBlockM;
      v[u] = i < outliers * kBlockM && token < a.m
                 ? a.x_outliers[static_cast<int64_t>(token) * a.k + i / kBlockM]
                 : uint16_t{0};
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
      if (base + lane + 32 * u < outliers * kBlockM) staged_x[base + lane + 32 * u] = v[u];
  }
  auto* staged_w = reinterpret_cast<float*>(smem + C::kOutlierWOffset);
  for (int base = 0; base < outliers * kBlockN; base += 32 * kBatch) {  // the same trip count in every lane
    int8_t v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = base + lane + 32 * u, row = row_base + i % kBlockN;
      const int col = __shfl_sync(0xffffffffu, column, (i / kBlockN) % 32);
      v[u] = i < outliers * kBlockN && row < a.n ? a.w[static_cast<int64_t>(row) * a.k + col] : int8_t{0};
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = base + lane + 32 * u;
      if (i < outliers * kBlockN) staged_w[i] = int8q::dequantize(v[u], w_scale[i % kBlockN]);
    }
  }
}

// kSplitK: the kernel without split-K has no cluster code at all (its presence alone spilled accumulators in
// the epilogue).
template <bool kBf16, int kBlockN, int kCtasPerSm, bool kSplitK>
__global__ void __launch_bounds__(kThreads, kCtasPerSm)
    int8_wide_kernel(const __grid_constant__ CUtensorMap x_map, const __grid_constant__ CUtensorMap w_map,
                     const Int8GemmArgs a) {
#if QLLM_WGMMA_ENABLED
  using C = Config<kBlockN, kCtasPerSm>;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = sm90::align_1024(smem_raw);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + C::kRingBytes);
  uint64_t* empty = full + C::kStages;
  auto stage_a = [&](int s) { return smem + s * C::kStageBytes; };
  auto stage_b = [&](int s) { return smem + s * C::kStageBytes + C::kStageA; };

  const int warpgroup = threadIdx.x / 128;  // 0, 1: consumers; 2: the producer warp
  const bool producer = warpgroup == 2;
  const int token_base = blockIdx.x * kBlockM;  // token tiles vary fastest: CTAs sharing weights run together
  const int row_base = blockIdx.z * kBlockN;
  const int split = blockIdx.y;  // = the CTA's rank in its cluster (the cluster spans the splits)
  const int k_blocks = (a.k + kBlockK - 1) / kBlockK;
  const int block_begin = split * a.steps_per_split;
  const int blocks = max(min(block_begin + a.steps_per_split, k_blocks) - block_begin, 0);

  if (threadIdx.x == 0) {
    for (int s = 0; s < C::kStages; ++s) {
      mbarrier_init(&full[s], 1);   // the producer's arrive (with the copies' byte count)
      mbarrier_init(&empty[s], 2);  // one arrive per consumer warpgroup
    }
    fence_barrier_init();
    prefetch_tensor_map(&x_map);
    prefetch_tensor_map(&w_map);
  }
  __syncthreads();
  wait_for_previous_kernel();  // the int8 activations, their scales and the outliers come from the prep
  int8::clear_outlier_bitmap(a);

  if (producer) {
    // ---- producer: one thread streams the stages; then the warp stages the epilogue's operands, which the
    // consumers need only after their last stages (staging first would hold back the copies) ----
    if (threadIdx.x == kConsumerThreads) {
      for (int kb = 0; kb < blocks; ++kb) {
        const int s = kb % C::kStages;
        if (kb >= C::kStages) mbarrier_wait(&empty[s], ((kb / C::kStages) - 1) & 1);
        mbarrier_arrive_expect_tx(&full[s], C::kStageBytes);
        const int k0 = (block_begin + kb) * kBlockK;
        tma_load_2d(stage_a(s), &x_map, k0, token_base, &full[s]);  // rows past M / columns past K: zeros
        tma_load_2d(stage_b(s), &w_map, k0, row_base, &full[s]);
      }
    }
    __syncwarp();
    stage_epilogue_operands<kBlockN, kCtasPerSm>(a, smem, token_base, row_base);
    __syncwarp();
    named_barrier_arrive(kEpilogueBarrier, kThreads);
    if constexpr (kSplitK) {  // the consumers' two cluster barriers below count every thread of the cluster
      cluster_sync();
      cluster_sync();
    }
    return;
  }

  // ---- consumers: 64 tokens x kBlockN rows each ----
  const int consumer = warpgroup;
  // acc[4c + e] is token 16w + g + 8(e / 2), weight row 8c + 2t + (e % 2).
  int32_t acc[kBlockN / 2];
#pragma unroll
  for (int i = 0; i < kBlockN / 2; ++i) acc[i] = 0;
  for (int kb = 0; kb < blocks; ++kb) {
    const int s = kb % C::kStages;
    mbarrier_wait(&full[s], (kb / C::kStages) & 1);
    keep(acc);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBlockK / 32; ++kk) {
      WgmmaS8<kBlockN>::mma(acc, sw128_descriptor(stage_a(s) + consumer * 64 * kBlockK + kk * 32),
                            sw128_descriptor(stage_b(s) + kk * 32), 1);
    }
    wgmma_commit();
    wgmma_wait<1>();  // the previous stage's wgmmas are done: hand that stage back
    if (kb > 0 && threadIdx.x % 128 == 0) mbarrier_arrive(&empty[(kb - 1) % C::kStages]);
  }
  wgmma_wait<0>();
  keep(acc);

  // ---- split-K: CTA `split` of the cluster owns the accumulator pairs p with p % splits == split; it adds
  // every CTA's int32 values for them (DSMEM reads) and finishes only those outputs ----
  const int rank = threadIdx.x;  // consumer thread 0..255
  // As a bit mask: a test per (constant) pair index is one shift.
  uint64_t owned_pairs = 0;
  if constexpr (kSplitK) {
    for (int p = split; p < kBlockN / 4; p += a.splits) owned_pairs |= uint64_t{1} << p;
  }
  auto owned = [&](int pair) { return !kSplitK || ((owned_pairs >> pair) & 1u) != 0; };
  if constexpr (kSplitK) {
    auto* stash = reinterpret_cast<int32_t*>(smem);  // the ring is idle: every stage has been consumed
#pragma unroll
    for (int i = 0; i < kBlockN / 2; ++i) stash[i * 256 + rank] = acc[i];
    cluster_sync();                       // every split's stash is written
    for (int c = 0; c < a.splits; ++c) {  // int32 sums: exact, so the order does not matter
      if (c == split) continue;           // this CTA's own values are in acc already
      const uint32_t remote = cluster_peer_address(stash + rank, c);
#pragma unroll
      for (int i = 0; i < kBlockN / 2; ++i)
        if (owned(i / 2)) acc[i] += load_cluster_s32(remote + i * 256 * 4);
    }
    cluster_sync();  // the others have read this CTA's stash: its shared memory may be reused
  }

  // ---- epilogue ----
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  named_barrier(kEpilogueBarrier, kThreads);  // the producer warp's staged operands are in shared memory
  const int outliers = *reinterpret_cast<const int*>(smem + C::kCountOffset);
  const float* w_scale = reinterpret_cast<const float*>(smem + C::kScaleOffset);
  const bool staged = outliers <= kStagedOutliers;
  const auto* staged_x = reinterpret_cast<const uint16_t*>(smem + C::kOutlierXOffset);
  const auto* staged_w = reinterpret_cast<const float*>(smem + C::kOutlierWOffset);
  // Three passes over the accumulators, each fully unrolled (constant indices keep acc in registers):
  // scale in place (acc then holds float bits), add the outlier columns, store.
  int tokens[2];
  float x_scale[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    tokens[half] = token_base + consumer * 64 + 16 * warp + g + 8 * half;
    x_scale[half] = tokens[half] < a.m ? a.x_absmax[tokens[half]] * (1.0f / 16129.0f) : 0.f;
  }
#pragma unroll
  for (int c = 0; c < kBlockN / 8; ++c) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const float w_absmax = w_scale[8 * c + 2 * t + e];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int i = 4 * c + 2 * half + e;
        acc[i] = __float_as_int(static_cast<float>(acc[i]) * (x_scale[half] * w_absmax));
      }
    }
  }
  // Adds outlier column o, given its activations for this thread's two tokens and a weight per row.
  auto add_outlier = [&](const float(&xo)[2], auto weight_of_row) {
#pragma unroll
    for (int c = 0; c < kBlockN / 8; ++c) {
      const float2 w = weight_of_row(8 * c + 2 * t);  // rows 8c + 2t and 8c + 2t + 1
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        acc[4 * c + 2 * half] = __float_as_int(__int_as_float(acc[4 * c + 2 * half]) + xo[half] * w.x);
        acc[4 * c + 2 * half + 1] =
            __float_as_int(__int_as_float(acc[4 * c + 2 * half + 1]) + xo[half] * w.y);
      }
    }
  };
  // Two separate loops: with the global-memory path inside the staged one behind a branch, the compiler
  // predicated it in and issued its address and dequantization arithmetic for every element (4x the
  // instructions; lm_head M = 512 with 2 outlier columns took 397 us against 277 us without, on H200).
  if (staged) {
    for (int o = 0; o < outliers; ++o) {
      const float xo[2] = {from_16bit<kBf16>(staged_x[o * kBlockM + tokens[0] - token_base]),
                           from_16bit<kBf16>(staged_x[o * kBlockM + tokens[1] - token_base])};
      add_outlier(xo,
                  [&](int row) { return *reinterpret_cast<const float2*>(staged_w + o * kBlockN + row); });
    }
  } else {
    for (int o = 0; o < outliers; ++o) {
      float xo[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        xo[half] =
            tokens[half] < a.m
                ? from_16bit<kBf16>(a.x_outliers[static_cast<int64_t>(tokens[half]) * a.k + o])
                : 0.f;
      }
      const int column = a.outlier_cols[o];
      add_outlier(xo, [&](int row) {
        float w[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int r = row_base + row + e;
          w[e] =
              r < a.n ? int8q::dequantize(a.w[static_cast<int64_t>(r) * a.k + column], a.w_absmax[r]) : 0.f;
        }
        return float2{w[0], w[1]};
      });
    }
  }
  auto* y = static_cast<uint16_t*>(a.y);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int token = tokens[half];
    if (token >= a.m) continue;
#pragma unroll
    for (int c = 0; c < kBlockN / 8; ++c) {
      const int row = row_base + 8 * c + 2 * t;
      if (row >= a.n || !owned(2 * c + half)) continue;
      *reinterpret_cast<uint32_t*>(y + static_cast<int64_t>(token) * a.n + row) = pack_output<kBf16>(
          __int_as_float(acc[4 * c + 2 * half]), __int_as_float(acc[4 * c + 2 * half + 1]));
    }
  }
#endif  // QLLM_WGMMA_ENABLED
}

template <bool kBf16, int kBlockN, int kCtasPerSm>
void launch_config(const Int8GemmArgs& a, const CUtensorMap& x_map, const CUtensorMap& w_map,
                   cudaStream_t stream) {
  using C = Config<kBlockN, kCtasPerSm>;
  auto* kernel = a.splits > 1 ? int8_wide_kernel<kBf16, kBlockN, kCtasPerSm, true>
                              : int8_wide_kernel<kBf16, kBlockN, kCtasPerSm, false>;
  static const bool configured = [] {
    for (auto* k : {int8_wide_kernel<kBf16, kBlockN, kCtasPerSm, true>,
                    int8_wide_kernel<kBf16, kBlockN, kCtasPerSm, false>})
      QLLM_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem));
    return true;
  }();
  (void)configured;
  if (a.configure_only) return;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3((a.m + kBlockM - 1) / kBlockM, a.splits, (a.n + kBlockN - 1) / kBlockN);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = C::kSmem;
  config.stream = stream;
  cudaLaunchAttribute attributes[2]{};
  attributes[0] = dependent_launch_attribute();            // sm_90: always available here
  attributes[1].id = cudaLaunchAttributeClusterDimension;  // the splits of one tile form a cluster
  attributes[1].val.clusterDim.x = 1;
  attributes[1].val.clusterDim.y = static_cast<unsigned>(a.splits);
  attributes[1].val.clusterDim.z = 1;
  config.attrs = attributes;
  config.numAttrs =
      a.splits > 1 ? 2 : 1;  // no cluster launch (and its scheduling constraints) without splits
  QLLM_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, x_map, w_map, a));
}

template <bool kBf16>
void launch_typed(const Int8GemmArgs& a, const CUtensorMap& x_map, const CUtensorMap& w_map, int block_n,
                  int ctas_per_sm, cudaStream_t stream) {
  if (block_n == 256) return launch_config<kBf16, 256, 1>(a, x_map, w_map, stream);
  if (block_n == 128 && ctas_per_sm == 1) return launch_config<kBf16, 128, 1>(a, x_map, w_map, stream);
  if (block_n == 128) return launch_config<kBf16, 128, 2>(a, x_map, w_map, stream);
  launch_config<kBf16, 64, 2>(a, x_map, w_map, stream);
}

}  // namespace

void launch_int8_wide(const Int8GemmArgs& a, const CUtensorMap& x_map, const CUtensorMap& w_map, int block_n,
                      int ctas_per_sm, cudaStream_t stream) {
  if (a.bf16) {
    launch_typed<true>(a, x_map, w_map, block_n, ctas_per_sm, stream);
  } else {
    launch_typed<false>(a, x_map, w_map, block_n, ctas_per_sm, stream);
  }
}

}  // namespace qllm::kernels
