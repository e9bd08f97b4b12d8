// LLM.int8() GEMM, wide path (Hopper sm_90a): Y[M, N] for large M on int8 tensor cores (wgmma s8 -> s32,
// twice the bf16 rate).
//
// Warp-specialized: warpgroup 0 is the producer (one thread issues TMA copies of the int8 activation tile
// [128 tokens x 128 k] and weight tile [kBlockN rows x 128 k] into a ring of kStages shared-memory stages,
// 128-byte swizzled as wgmma reads them); warpgroups 1 and 2 are consumers, each owning 64 tokens x kBlockN
// weight rows of the output, issuing four wgmma.m64nNk32 per stage from shared memory. mbarriers hand stages
// back and forth: `full` (the copies' bytes arrived) and `empty` (both consumers' wgmmas on it finished).
// The epilogue scales by absmax_x * absmax_w / 127^2 and adds the outlier columns in fp32.
#include <algorithm>

#include "kernels/gemm_int8_launch.h"

#include "kernels/cuda_utils.h"
#include "kernels/hopper.cuh"
#include "kernels/wgmma_ops.cuh"
#include "quant/int8_math.h"

namespace qllm::kernels {

namespace {

using namespace sm90;

constexpr int kBlockM = 128;  // tokens per CTA: two consumer warpgroups x 64
constexpr int kBlockK = 128;  // bytes (int8 values) of K per stage: one 128-byte swizzle row, four k32 wgmmas
constexpr int kThreads = 384;

template <int kBlockN>
struct Config {
  static constexpr int kStages = kBlockN == 256 ? 4 : 6;
  static constexpr int kStageA = kBlockM * kBlockK;  // bytes
  static constexpr int kStageB = kBlockN * kBlockK;
  static constexpr int kStageBytes = kStageA + kStageB;
  static constexpr int kSmem =
      kStages * kStageBytes + 2 * kStages * 8 + 1024;  // + barriers + alignment slack
};

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

template <bool kBf16, int kBlockN>
__global__ void __launch_bounds__(kThreads, 1)
    int8_wide_kernel(const __grid_constant__ CUtensorMap x_map, const __grid_constant__ CUtensorMap w_map,
                     const Int8GemmArgs a) {
#if QLLM_WGMMA_ENABLED
  using C = Config<kBlockN>;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = sm90::align_1024(smem_raw);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + C::kStages * C::kStageBytes);
  uint64_t* empty = full + C::kStages;
  auto stage_a = [&](int s) { return smem + s * C::kStageBytes; };
  auto stage_b = [&](int s) { return smem + s * C::kStageBytes + C::kStageA; };

  const int warpgroup = threadIdx.x / 128;
  const int token_base = blockIdx.x * kBlockM;  // token tiles vary fastest: CTAs sharing weights run together
  const int row_base = blockIdx.z * kBlockN;
  const int split = blockIdx.y;
  const int k_blocks = (a.k + kBlockK - 1) / kBlockK;
  const int block_begin = split * a.steps_per_split;
  const int blocks = max(min(block_begin + a.steps_per_split, k_blocks) - block_begin, 0);

  if (threadIdx.x == 0) {
    for (int s = 0; s < C::kStages; ++s) {
      mbarrier_init(&full[s], 1);   // the producer's arrive (with the copies' byte count)
      mbarrier_init(&empty[s], 2);  // one arrive per consumer warpgroup
    }
    fence_barrier_init();
  }
  __syncthreads();

  if (warpgroup == 0) {
    // ---- producer: one thread streams the stages ----
    if (threadIdx.x == 0) {
      prefetch_tensor_map(&x_map);
      prefetch_tensor_map(&w_map);
      for (int kb = 0; kb < blocks; ++kb) {
        const int s = kb % C::kStages;
        if (kb >= C::kStages) mbarrier_wait(&empty[s], ((kb / C::kStages) - 1) & 1);
        mbarrier_arrive_expect_tx(&full[s], C::kStageBytes);
        const int k0 = (block_begin + kb) * kBlockK;
        tma_load_2d(stage_a(s), &x_map, k0, token_base, &full[s]);  // rows past M / columns past K: zeros
        tma_load_2d(stage_b(s), &w_map, k0, row_base, &full[s]);
      }
    }
    return;
  }

  // ---- consumers: 64 tokens x kBlockN rows each ----
  const int consumer = warpgroup - 1;
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

  // ---- epilogue: acc[4c + e] is token 16w + g + 8(e / 2), weight row 8c + 2t + (e % 2) ----
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int outliers =
      a.splits == 1 ? min(a.status->outlier_count, kMaxOutlierColumns) : 0;  // else: in the reduce
  // Up to kStagedOutliers outlier columns go through shared memory (the pipeline stages are free now): their
  // activations [kBlockM][n] and dequantized weights [kBlockN][n] as floats, so that every output adds them
  // with shared-memory loads only. More columns (rare) are read from global memory.
  constexpr int kStagedOutliers = 32;
  const bool staged = outliers <= kStagedOutliers;
  float* staged_x = reinterpret_cast<float*>(smem);
  float* staged_w = staged_x + kBlockM * kStagedOutliers;
  if (outliers > 0 && staged) {
    const int rank = threadIdx.x - 128;  // 256 consumer threads
    for (int i = rank; i < kBlockM * outliers; i += 256) {
      const int token = token_base + i / outliers, o = i % outliers;
      staged_x[(i / outliers) * kStagedOutliers + o] =
          token < a.m ? from_16bit<kBf16>(a.x_outliers[static_cast<int64_t>(token) * kMaxOutlierColumns + o])
                      : 0.f;
    }
    for (int i = rank; i < kBlockN * outliers; i += 256) {
      const int row = row_base + i / outliers, o = i % outliers;
      staged_w[(i / outliers) * kStagedOutliers + o] =
          row < a.n
              ? int8q::dequantize(a.w[static_cast<int64_t>(row) * a.k + a.outlier_cols[o]], a.w_absmax[row])
              : 0.f;
    }
    named_barrier(1, 256);
  }
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
      const int row = row_base + 8 * c + 2 * t + e;
      const float w_absmax = row < a.n ? a.w_absmax[row] : 0.f;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int i = 4 * c + 2 * half + e;
        acc[i] = __float_as_int(static_cast<float>(acc[i]) * (x_scale[half] * w_absmax));
      }
    }
  }
  for (int o = 0; o < outliers; ++o) {
    float xo[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int token = tokens[half];
      if (staged) {
        xo[half] = staged_x[(token - token_base) * kStagedOutliers + o];
      } else {
        xo[half] = token < a.m
                       ? from_16bit<kBf16>(a.x_outliers[static_cast<int64_t>(token) * kMaxOutlierColumns + o])
                       : 0.f;
      }
    }
#pragma unroll
    for (int c = 0; c < kBlockN / 8; ++c) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int row = row_base + 8 * c + 2 * t + e;
        float w;
        if (staged) {
          w = staged_w[(row - row_base) * kStagedOutliers + o];
        } else {
          w = row < a.n ? int8q::dequantize(a.w[static_cast<int64_t>(row) * a.k + a.outlier_cols[o]],
                                            a.w_absmax[row])
                        : 0.f;
        }
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int i = 4 * c + 2 * half + e;
          acc[i] = __float_as_int(__int_as_float(acc[i]) + xo[half] * w);
        }
      }
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
      if (row >= a.n) continue;
      const float v0 = __int_as_float(acc[4 * c + 2 * half]), v1 = __int_as_float(acc[4 * c + 2 * half + 1]);
      if (a.splits == 1) {
        *reinterpret_cast<uint32_t*>(y + static_cast<int64_t>(token) * a.n + row) =
            pack_output<kBf16>(v0, v1);
      } else {
        *reinterpret_cast<float2*>(a.partials + (static_cast<int64_t>(split) * a.m + token) * a.n + row) =
            make_float2(v0, v1);
      }
    }
  }
#endif  // QLLM_WGMMA_ENABLED
}

template <bool kBf16, int kBlockN>
void launch_config(const Int8GemmArgs& a, const CUtensorMap& x_map, const CUtensorMap& w_map,
                   cudaStream_t stream) {
  using C = Config<kBlockN>;
  static const bool configured = [] {
    QLLM_CUDA_CHECK(cudaFuncSetAttribute(int8_wide_kernel<kBf16, kBlockN>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem));
    return true;
  }();
  (void)configured;
  const dim3 grid((a.m + kBlockM - 1) / kBlockM, a.splits, (a.n + kBlockN - 1) / kBlockN);
  int8_wide_kernel<kBf16, kBlockN><<<grid, kThreads, C::kSmem, stream>>>(x_map, w_map, a);
}

}  // namespace

void launch_int8_wide(const Int8GemmArgs& a, const CUtensorMap& x_map, const CUtensorMap& w_map, int block_n,
                      cudaStream_t stream) {
  if (a.bf16) {
    block_n == 128 ? launch_config<true, 128>(a, x_map, w_map, stream)
                   : launch_config<true, 256>(a, x_map, w_map, stream);
  } else {
    block_n == 128 ? launch_config<false, 128>(a, x_map, w_map, stream)
                   : launch_config<false, 256>(a, x_map, w_map, stream);
  }
}

}  // namespace qllm::kernels
