// W4A16 GEMM, wide path with dequantization in a producer warpgroup (Hopper sm_90a): Y[M, N] = X @ W'^T for
// large M (prefill), built like the int8 wide kernel (gemm_int8_wide.cu).
//
// Warp-specialized, all tensor-core operands in shared memory:
//  - warpgroup 0 produces: one thread issues the TMA copy of the activation tile [128 tokens x 64 k] (bf16,
//    128-byte swizzled); all 128 threads load the weights' repacked 16-byte units (docs/FORMATS.md) a stage
//    ahead, dequantize them in registers (lop3 magic, packed subtract of the zero point, packed multiply by
//    the scale: one rounding of the exact (q - z) * s) and write them with stmatrix into the stage's weight
//    tile [kBlockN rows x 64 k] in the same swizzled layout, then arrive on the stage's `full` barrier;
//  - warpgroups 1 and 2 consume: each owns 64 tokens x kBlockN weight rows, four wgmma.m64nNk16 per stage,
//    and hands the stage back through `empty` once its wgmmas are done.
// The dequantization thus never stalls the tensor cores, and each weight is dequantized once per CTA.
#include "kernels/gemm_w4a16_launch.h"

#include "kernels/cuda_utils.h"
#include "kernels/gemm_w4a16_device.cuh"
#include "kernels/hopper.cuh"
#include "kernels/wgmma_ops.cuh"

namespace qllm::kernels {

namespace {

using namespace w4a16;
using namespace sm90;

constexpr int kBlockM = 128;  // tokens per CTA: two consumer warpgroups x 64
constexpr int kBlockK =
    64;  // weights per row per stage: one 128-byte swizzle row, one repacked unit, 4 wgmmas
constexpr int kThreads = 384;

template <int kBlockN>
struct WideConfig {
  static constexpr int kStages = kBlockN == 256 ? 4 : 6;
  static constexpr int kStageA = kBlockM * kBlockK * 2;  // bytes
  static constexpr int kStageB = kBlockN * kBlockK * 2;
  static constexpr int kStageBytes = kStageA + kStageB;
  static constexpr int kSmem = kStages * kStageBytes + 2 * kStages * 8 + 1024;
  static constexpr int kTilesPerWarp =
      kBlockN / 16 / 4;  // 16-row weight tiles each producer warp dequantizes
};

__device__ __forceinline__ void stmatrix_x4(uint32_t address, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(address), "r"(r[0]),
               "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}

template <typename T, int kBlockN>
__global__ void __launch_bounds__(kThreads, 1)
    w4a16_wide_kernel(const __grid_constant__ CUtensorMap x_map, const W4A16KernelArgs a) {
#if QLLM_WGMMA_ENABLED
  using C = WideConfig<kBlockN>;
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
  const int k_steps = a.k / kBlockK;
  const int step_begin = split * a.steps_per_split;
  const int steps = max(min(step_begin + a.steps_per_split, k_steps) - step_begin, 0);

  if (threadIdx.x == 0) {
    for (int s = 0; s < C::kStages; ++s) {
      mbarrier_init(&full[s], 1 + 128);  // the TMA arrive (with its byte count) + every producer thread's
      mbarrier_init(&empty[s], 2);       // one arrive per consumer warpgroup
    }
    fence_barrier_init();
  }
  __syncthreads();

  if (warpgroup == 0) {
    // ---- producer: TMA for the activations, dequantization for the weights ----
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4;
    int tile16[C::kTilesPerWarp];  // this warp's 16-row tiles: warp, warp + 4, ... (global tile index)
    bool tile_active[C::kTilesPerWarp];
#pragma unroll
    for (int i = 0; i < C::kTilesPerWarp; ++i) {
      const int local = warp + 4 * i;
      tile16[i] = row_base / 16 + local;
      tile_active[i] = row_base + 16 * local < a.n;
    }
    // One stage of a producer thread's input: its 16-byte unit of each tile, and the scale (and zero-point)
    // pairs of the groups its four k16 steps fall in. Loaded a stage ahead of use, so no dequantization waits
    // on memory.
    struct StageInput {
      uint4 unit[C::kTilesPerWarp];
      uint32_t scale[C::kTilesPerWarp][4];
      uint32_t zero[C::kTilesPerWarp][4];
    };
    const auto* units = static_cast<const uint4*>(a.qweight);
    constexpr uint32_t kSymmetricZero = (T::kMagic + 8) | ((T::kMagic + 8) << 16);
    auto load_stage = [&](int kb, StageInput& in) {
#pragma unroll
      for (int i = 0; i < C::kTilesPerWarp; ++i) {
        const bool live = tile_active[i] && kb < steps;
        in.unit[i] =
            live ? load_weights(units + (static_cast<int64_t>(tile16[i]) * k_steps + step_begin + kb) * 32 +
                                lane)
                 : make_uint4(0, 0, 0, 0);
        const int64_t pair_base = static_cast<int64_t>(tile16[i]) * a.groups * 8 + g;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int group = ((step_begin + kb) * 4 + j) / a.group_steps;
          in.scale[i][j] = live ? __ldg(a.scales + pair_base + group * 8) : 0u;
          in.zero[i][j] = (live && a.zero_offsets != nullptr) ? __ldg(a.zero_offsets + pair_base + group * 8)
                                                              : kSymmetricZero;
        }
      }
    };
    StageInput now, next;
    load_stage(0, now);
    load_stage(1, next);
    if (threadIdx.x == 0) prefetch_tensor_map(&x_map);
    // stmatrix row addresses: lane l stores row (l / 8 % 2) * 8 + l % 8 of 8x8 matrix l / 8 (16-byte chunk
    // l / 16 of the k16 step), at its 128-byte swizzled position.
    const int lane_row = ((lane / 8) % 2) * 8 + lane % 8, lane_chunk = lane / 16;
    for (int kb = 0; kb < steps; ++kb) {
      const int s = kb % C::kStages;
      if (kb >= C::kStages) mbarrier_wait(&empty[s], ((kb / C::kStages) - 1) & 1);
      if (threadIdx.x == 0) {
        mbarrier_arrive_expect_tx(&full[s], C::kStageA);
        tma_load_2d(stage_a(s), &x_map, (step_begin + kb) * kBlockK, token_base, &full[s]);
      }
      const uint32_t b_base = smem_addr(stage_b(s));
#pragma unroll
      for (int i = 0; i < C::kTilesPerWarp; ++i) {
        const uint32_t words[4] = {now.unit[i].x, now.unit[i].y, now.unit[i].z, now.unit[i].w};
        const int row = 16 * (warp + 4 * i) + lane_row;  // within the stage's weight tile
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          uint32_t frag[4];
          dequant_step<T>(words[j], low_pair(now.zero[i][j]), high_pair(now.zero[i][j]), frag);
          const uint32_t scale_lo = low_pair(now.scale[i][j]), scale_hi = high_pair(now.scale[i][j]);
          frag[0] = mul2<T>(frag[0], scale_lo);  // rows g: one rounding of the exact (q - z) * s
          frag[1] = mul2<T>(frag[1], scale_hi);  // rows g + 8
          frag[2] = mul2<T>(frag[2], scale_lo);
          frag[3] = mul2<T>(frag[3], scale_hi);
          const int chunk = 2 * j + lane_chunk;
          stmatrix_x4(b_base + row * 128 + ((chunk ^ (row & 7)) * 16), frag);
        }
      }
      asm volatile("fence.proxy.async.shared::cta;" ::
                       : "memory");  // stmatrix writes -> wgmma (async proxy) reads
      mbarrier_arrive(&full[s]);
      now = next;
      load_stage(kb + 2, next);
    }
    return;
  }

  // ---- consumers: 64 tokens x kBlockN rows each ----
  const int consumer = warpgroup - 1;
  float acc[kBlockN / 2];
#pragma unroll
  for (int i = 0; i < kBlockN / 2; ++i) acc[i] = 0.f;
  for (int kb = 0; kb < steps; ++kb) {
    const int s = kb % C::kStages;
    mbarrier_wait(&full[s], (kb / C::kStages) & 1);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBlockK / 16; ++kk) {
      WgmmaSS<kBlockN, T::kIsBf16>::mma(acc, sw128_descriptor(stage_a(s) + consumer * 64 * 128 + kk * 32),
                                        sw128_descriptor(stage_b(s) + kk * 32), 1);
    }
    wgmma_commit();
    wgmma_wait<1>();  // the previous stage's wgmmas are done: hand that stage back
    if (kb > 0 && threadIdx.x % 128 == 0) mbarrier_arrive(&empty[(kb - 1) % C::kStages]);
  }
  wgmma_wait<0>();

  // ---- epilogue: acc[4c + e] is token 16w + g + 8(e / 2), weight row 8c + 2t + (e % 2) ----
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  auto* y = static_cast<uint16_t*>(a.y);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int token = token_base + consumer * 64 + 16 * warp + g + 8 * half;
    if (token >= a.m) continue;
#pragma unroll  // fully: acc must be indexed by constants to stay in registers
    for (int c = 0; c < kBlockN / 8; ++c) {
      const int row = row_base + 8 * c + 2 * t;
      if (row >= a.n) continue;
      const float v0 = acc[4 * c + 2 * half], v1 = acc[4 * c + 2 * half + 1];
      if (a.splits == 1) {
        *reinterpret_cast<uint32_t*>(y + static_cast<int64_t>(token) * a.n + row) =
            float_to_output<T>(v0) | (static_cast<uint32_t>(float_to_output<T>(v1)) << 16);
      } else {
        *reinterpret_cast<float2*>(a.partials + (static_cast<int64_t>(split) * a.m + token) * a.n + row) =
            make_float2(v0, v1);
      }
    }
  }
#endif  // QLLM_WGMMA_ENABLED
}

template <typename T, int kBlockN>
void launch_config(const W4A16KernelArgs& a, const CUtensorMap& x_map, cudaStream_t stream) {
  using C = WideConfig<kBlockN>;
  static const bool configured = [] {
    QLLM_CUDA_CHECK(cudaFuncSetAttribute(w4a16_wide_kernel<T, kBlockN>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem));
    return true;
  }();
  (void)configured;
  const dim3 grid((a.m + kBlockM - 1) / kBlockM, a.splits, (a.n + kBlockN - 1) / kBlockN);
  w4a16_wide_kernel<T, kBlockN><<<grid, kThreads, C::kSmem, stream>>>(x_map, a);
}

}  // namespace

void launch_w4a16_wide(const W4A16KernelArgs& a, bool bf16, const CUtensorMap& x_map, int block_n,
                       cudaStream_t stream) {
  if (bf16) {
    block_n == 128 ? launch_config<Bf16, 128>(a, x_map, stream) : launch_config<Bf16, 256>(a, x_map, stream);
  } else {
    block_n == 128 ? launch_config<F16, 128>(a, x_map, stream) : launch_config<F16, 256>(a, x_map, stream);
  }
}

}  // namespace qllm::kernels
