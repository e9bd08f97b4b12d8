// W4A16 GEMM, wgmma path (Hopper sm_90a): Y[M, N] = X[M, K] @ W'[N, K]^T past the skinny kernel's 16 tokens,
// on weights large enough that its tiles fill the GPU: from where the dequantization, not the weight
// stream, sets the pace, to prefill, where the tensor cores do.
//
// Warp-specialized; the dequantization runs in the warps that issue the MMAs, between their wgmmas:
//  - warpgroup 0 produces (one thread of it; it gives most of its registers to the consumers): per 64-wide k
//    step it issues the TMA copies of a ring stage: the activation tile [kTok tokens x 64] (128-byte
//    swizzled, the layout wgmma's B descriptor names), the CTA's repacked weight units (512 bytes per 16
//    rows: each lane's A fragments for four k16 steps, docs/FORMATS.md) and their scale (and zero-point)
//    pairs. Three or four copies per stage from one thread (per-lane bulk copies were serialized by the
//    compiler and could not keep up); no consumer thread waits on global memory or computes an address in it;
//  - warpgroups 1 and 2 consume: Y^T = W' X^T with the weights as wgmma's A operand from registers. Each
//    owns kWgTiles 64-row tiles; per step it reads its units from shared memory, dequantizes them (lop3
//    magic, packed subtract of the zero point, packed multiply by the scale: one rounding of the exact
//    (q - z) * s) into one of two register buffers while the previous step's wgmmas run on the other;
//  - for 65-128 tokens on the smaller weights both consumer warpgroups share one 64-row tile and split the
//    128 tokens instead (kSplitTokens): four times the CTAs of the 256-row tiles, each dequantizing its
//    weights for 64 tokens, so the grid needs less split-K (gate/up none);
//  - split-K when the output has too few tiles to fill the GPU: fp32 partial sums, then a reduction pass
//    over the whole GPU (a tile's last CTA adding them alone took 6x longer);
//  - min offset (GGUF Q4_1, w' = u * s + m; groups of 32 only, Q4_1's): its own instantiations; the minimums
//    travel in the zero points' place (same registers as a zero point: no more pressure than the asymmetric
//    path), z = 0, and a packed fma applies scale and minimum with one rounding of the exact u * s + m.
#include <type_traits>

#include "kernels/gemm/w4a16_launch.h"

#include "kernels/common/hopper.cuh"
#include "kernels/common/wgmma_ops.cuh"
#include "kernels/gemm/w4a16_device.cuh"
#include "kernels/runtime/cuda_utils.h"

namespace qllm::kernels {

namespace {

using namespace w4a16;
using namespace sm90;

constexpr int kStepK = 64;     // one swizzle row of activations (128 bytes), one repacked unit per step
constexpr int kThreads = 384;  // producer warpgroup + two consumer warpgroups
// Registers per thread after setmaxnreg: the producer only issues copies; a consumer holds up to 128
// accumulators, two buffers of A fragments (32 each with two tiles) and the step's raw units.
[[maybe_unused]] constexpr int kProducerRegs = 40;
[[maybe_unused]] constexpr int kConsumerRegs = 232;

// kTok tokens x (2 warpgroups x kWgTiles 64-row tiles) per CTA, or with kSplitTokens kTok tokens (half per
// warpgroup) x one 64-row tile; kScaleGroups scale groups per k step (1 for groups of 64 and more, 2 for 32,
// 4 for 16).
template <int kTok, int kWgTiles, int kScaleGroups, bool kSplitTokens>
struct Config {
  static_assert(!kSplitTokens || kWgTiles == 1, "split-token CTAs own one 64-row tile");
  static constexpr int kRows = (kSplitTokens ? 64 : 128) * kWgTiles;
  static constexpr int kWgTok = kSplitTokens ? kTok / 2 : kTok;  // tokens per consumer warpgroup (wgmma N)
  static_assert(kWgTok % 8 == 0 && kWgTok <= 256, "wgmma's N is a multiple of 8, at most 256");
  static_assert(kWgTok % 8 == 0 && kWgTok <= 256, "wgmma's N is a multiple of 8, at most 256");
  static constexpr int kUnits = kRows / 16;          // 16-row tiles: one 512-byte unit each per step
  static constexpr int kXBytes = kTok * kStepK * 2;  // multiple of 1024: keeps the swizzle atoms aligned
  static constexpr int kWBytes = kUnits * 512;
  static constexpr int kPairBytes = kUnits * kScaleGroups * 32;  // 8 (s[g], s[g + 8]) pairs per unit, group
  static constexpr int kStageBytes = (kXBytes + kWBytes + 2 * kPairBytes + 1023) / 1024 * 1024;
  static constexpr int kStages = (220 * 1024) / kStageBytes < 8 ? (220 * 1024) / kStageBytes : 8;
  static constexpr int kSmem = kStages * kStageBytes + 2 * kStages * 8 + 1024;  // + barriers, + alignment
  static_assert(kStages >= 3, "the ring needs at least three stages");
};

template <typename T, int kTok, int kWgTiles, int kScaleGroups, bool kSplitTokens, bool kMinOffset>
__global__ void __launch_bounds__(kThreads, 1)
    w4a16_wgmma_kernel(const __grid_constant__ W4A16WgmmaMaps maps, const W4A16KernelArgs args) {
#if QLLM_WGMMA_ENABLED
  using C = Config<kTok, kWgTiles, kScaleGroups, kSplitTokens>;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = align_1024(smem_raw);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + C::kStages * C::kStageBytes);
  uint64_t* empty = full + C::kStages;
  auto stage_x = [&](int s) { return smem + s * C::kStageBytes; };
  auto stage_w = [&](int s) { return smem + s * C::kStageBytes + C::kXBytes; };
  auto stage_scales = [&](int s) { return smem + s * C::kStageBytes + C::kXBytes + C::kWBytes; };

  const int warpgroup = threadIdx.x / 128;
  // Token tiles vary fastest across the grid: the CTAs that share a weight tile run at the same time and
  // read it from DRAM once (L2 serves the others).
  const int token_base = blockIdx.x * kTok;
  const int split = blockIdx.y;
  const int row_base = blockIdx.z * C::kRows;
  const int k_steps = args.k / kStepK;
  const int step_begin = split * args.steps_per_split;
  const int steps = max(min(step_begin + args.steps_per_split, k_steps) - step_begin, 0);
  // N % 64 == 0: a 64-row tile, four units, is all in or all out.
  const int live_units = min(C::kUnits, (args.n - row_base) / 16);

  if (threadIdx.x == 0) {
    for (int s = 0; s < C::kStages; ++s) {
      mbarrier_init(&full[s], 1);   // the producer's arrive, with the stage's byte count
      mbarrier_init(&empty[s], 2);  // one arrive per consumer warpgroup
    }
    fence_barrier_init();
  }
  __syncthreads();

  if (warpgroup == 0) {
    // ---- producer ----
    setmaxnreg_dec<kProducerRegs>();
    if (threadIdx.x != 0) return;
    const bool asymmetric = args.zero_offsets != nullptr;
    constexpr uint32_t kBytes = C::kXBytes + C::kWBytes + C::kPairBytes;  // boxes past N arrive as zeros
    const uint32_t stage_bytes = kBytes + (asymmetric ? C::kPairBytes : 0);
    const int unit_row = row_base / 16;
    prefetch_tensor_map(&maps.x);
    prefetch_tensor_map(&maps.units);
    prefetch_tensor_map(&maps.scales);
    if (asymmetric) prefetch_tensor_map(&maps.zeros);
    for (int kb = 0; kb < steps; ++kb) {
      const int s = kb % C::kStages, step = step_begin + kb;
      if (kb >= C::kStages) mbarrier_wait(&empty[s], ((kb / C::kStages) - 1) & 1);
      mbarrier_arrive_expect_tx(&full[s], stage_bytes);
      tma_load_2d(stage_x(s), &maps.x, step * kStepK, token_base, &full[s]);
      tma_load_2d(stage_w(s), &maps.units, step * 128, unit_row, &full[s]);
      const int first_pair = (step * 4) / args.group_steps * 8;
      tma_load_2d(stage_scales(s), &maps.scales, first_pair, unit_row, &full[s]);
      if (asymmetric)
        tma_load_2d(stage_scales(s) + C::kPairBytes, &maps.zeros, first_pair, unit_row, &full[s]);
    }
    return;
  }

  // ---- consumers ----
  setmaxnreg_inc<kConsumerRegs>();
  constexpr int kAcc = C::kWgTok / 2;  // accumulators per thread per 64-row tile
  const int consumer = warpgroup - 1, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32, g = lane / 4;
  // This warpgroup's first token within the CTA's tile, and its 64-row tiles' index within the CTA.
  const int wg_token = kSplitTokens ? consumer * C::kWgTok : 0;
  const int wg_tile = kSplitTokens ? 0 : consumer * kWgTiles;
  const bool asymmetric = args.zero_offsets != nullptr;
  bool tile_active[kWgTiles];
  int unit_of[kWgTiles];  // this warp's 16-row unit within the CTA, per 64-row tile
#pragma unroll
  for (int i = 0; i < kWgTiles; ++i) {
    unit_of[i] = (wg_tile + i) * 4 + warp;
    tile_active[i] = unit_of[i] < live_units;
  }

  // A step's inputs from its stage: the lane's 16-byte unit of each tile and the scale (zero) pairs.
  struct StepInput {
    uint32_t words[kWgTiles][4];
    uint32_t scale[kWgTiles][kScaleGroups], zero[kWgTiles][kScaleGroups];
  };
  auto load_input = [&](int kb, StepInput& in) {
    if (kb >= steps) return;  // the inputs stay stale: the loop ends before their fragments are used
    const int s = kb % C::kStages;
    mbarrier_wait(&full[s], (kb / C::kStages) & 1);
#pragma unroll
    for (int i = 0; i < kWgTiles; ++i) {
      ld_shared_v4(smem_addr(stage_w(s) + unit_of[i] * 512 + lane * 16), in.words[i]);
      const uint32_t pairs = smem_addr(stage_scales(s)) + (unit_of[i] * kScaleGroups * 8 + g) * 4;
#pragma unroll
      for (int jg = 0; jg < kScaleGroups; ++jg) {
        in.scale[i][jg] = ld_shared_u32(pairs + jg * 32);
        in.zero[i][jg] = asymmetric ? ld_shared_u32(pairs + C::kPairBytes + jg * 32)
                                    : ((T::kNibbleMagic + 8) | ((T::kNibbleMagic + 8) << 16));
      }
    }
  };
  // A step's fragments: (q - z) * s for each tile and k16 step. Branch-free: tiles past N were filled with
  // zero units and zero scales by the TMA, so their fragments are zeros and their wgmmas add nothing.
  auto dequant = [&](const StepInput& in, uint32_t(&a)[kWgTiles][4][4]) {
#pragma unroll
    for (int i = 0; i < kWgTiles; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int jg = j / (4 / kScaleGroups);  // the k16 step's group among the step's kScaleGroups
        const uint32_t zero = in.zero[i][jg];
        const uint32_t scale_lo = low_pair(in.scale[i][jg]), scale_hi = high_pair(in.scale[i][jg]);
        if constexpr (kMinOffset) {  // `zero` holds the minimums (m[g], m[g + 8])
          constexpr uint32_t kNoZero = T::kNibbleMagic | (T::kNibbleMagic << 16);
          dequant_step<T>(in.words[i][j], kNoZero, kNoZero, a[i][j]);
          a[i][j][0] = fma2<T>(a[i][j][0], scale_lo, low_pair(zero));   // rows g: u * s + m, one rounding
          a[i][j][1] = fma2<T>(a[i][j][1], scale_hi, high_pair(zero));  // rows g + 8
          a[i][j][2] = fma2<T>(a[i][j][2], scale_lo, low_pair(zero));
          a[i][j][3] = fma2<T>(a[i][j][3], scale_hi, high_pair(zero));
        } else {
          dequant_step<T>(in.words[i][j], low_pair(zero), high_pair(zero), a[i][j]);
          a[i][j][0] = mul2<T>(a[i][j][0], scale_lo);  // rows g: one rounding of the exact (q - z) * s
          a[i][j][1] = mul2<T>(a[i][j][1], scale_hi);  // rows g + 8
          a[i][j][2] = mul2<T>(a[i][j][2], scale_lo);
          a[i][j][3] = mul2<T>(a[i][j][3], scale_hi);
        }
      }
    }
  };

  float acc[kWgTiles][kAcc];
#pragma unroll
  for (int i = 0; i < kWgTiles; ++i) {
#pragma unroll
    for (int r = 0; r < kAcc; ++r) acc[i][r] = 0.f;
  }
  // Two register buffers of A fragments, a step's each: one is dequantized while the wgmmas of the other may
  // still read it. (Three, unrolled by three with early exits, made ptxas serialize every wgmma: C7513.)
  uint32_t a_frag[2][kWgTiles][4][4];

  StepInput input{};
  load_input(0, input);
  dequant(input, a_frag[0]);

  // One k step. kCur is the register buffer holding step kb's fragments; kCur ^ 1 receives step kb + 1's
  // once the wgmmas that read it (step kb - 1's) are done.
  auto step = [&](int kb, auto cur_tag) {
    constexpr int kCur = decltype(cur_tag)::value, kNext = kCur ^ 1;
    const uint8_t* x_tile = stage_x(kb % C::kStages) + wg_token * 128;  // 128-byte rows, 1024-byte aligned
#pragma unroll
    for (int i = 0; i < kWgTiles; ++i) keep(acc[i]);
    wgmma_fence();
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // the tiles' independent accumulator chains alternate
#pragma unroll
      for (int i = 0; i < kWgTiles; ++i) {
        Wgmma<C::kWgTok, T::kIsBf16>::mma(acc[i], a_frag[kCur][i][j], sw128_descriptor(x_tile + 32 * j), 1);
      }
    }
    wgmma_commit();
    load_input(kb + 1, input);  // shared-memory latency overlaps the wgmmas still running
    wgmma_wait<1>();            // step kb - 1's wgmmas are done: its stage and register buffer are free
    if (kb > 0 && threadIdx.x % 128 == 0) mbarrier_arrive(&empty[(kb - 1) % C::kStages]);
#pragma unroll
    for (int i = 0; i < kWgTiles; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) keep(a_frag[kNext][i][j]);
    }
    dequant(input, a_frag[kNext]);
  };
  // Unrolled by two so that the register buffers have fixed names; the exit is uniform.
  for (int kb = 0; kb < steps; kb += 2) {
    step(kb, std::integral_constant<int, 0>{});
    if (kb + 1 >= steps) break;
    step(kb + 1, std::integral_constant<int, 1>{});
  }
  wgmma_wait<0>();
#pragma unroll
  for (int i = 0; i < kWgTiles; ++i) keep(acc[i]);

  // ---- epilogue: acc[i][4c + e] is row 16 * warp + g + 8 * (e / 2), token 8c + 2t + (e % 2) ----
  const int t = lane % 4;
  if (args.splits > 1) {  // fp32 partial sums; launch_splitk_reduce adds them afterwards
#pragma unroll
    for (int i = 0; i < kWgTiles; ++i) {
      if (!tile_active[i]) continue;
      const int row0 = row_base + unit_of[i] * 16 + g;
#pragma unroll
      for (int r = 0; r < kAcc; ++r) {
        const int token = token_base + wg_token + 8 * (r / 4) + 2 * t + (r % 2);
        const int row = row0 + 8 * ((r % 4) / 2);
        if (token < args.m)
          args.partials[(static_cast<int64_t>(split) * args.m + token) * args.n + row] = acc[i][r];
      }
    }
    return;
  }
  // Y is [token][row]: the tile goes through shared memory (the ring, idle once both consumer warpgroups are
  // past their last wgmma), transposed by stmatrix into [kTok][kRows] rows padded by 16 bytes (the eight rows
  // of a matrix in different banks), then out in 16-byte stores along Y's rows instead of 2-byte stores
  // scattered over four tokens per instruction (with branch-free dequantization, lm_head M=128 went from 130
  // to 110 us).
  constexpr int kTileStride = C::kRows * 2 + 16;
  static_assert(kTok * kTileStride <= C::kStages * C::kStageBytes, "the output tile must fit in the ring");
  named_barrier(1, 256);
#pragma unroll
  for (int i = 0; i < kWgTiles; ++i) {
#pragma unroll
    for (int c = 0; c < kAcc / 4; c += 2) {  // two 8-token column groups per stmatrix.x4
      uint32_t packed[4];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float* v = &acc[i][4 * (c + h)];
        packed[2 * h] = pack2<T>(v[0], v[1]);
        packed[2 * h + 1] = pack2<T>(v[2], v[3]);
      }
      // Lane l addresses row l % 8 of matrix l / 8: token 8 (c + l / 16) + l % 8, weight rows 8 (l / 8 % 2)..
      const int token = wg_token + 8 * (c + lane / 16) + lane % 8;
      const int row = unit_of[i] * 16 + 8 * ((lane / 8) % 2);
      stmatrix_x4_trans(smem_addr(smem + token * kTileStride + row * 2), packed);
    }
  }
  named_barrier(1, 256);
  auto* y = static_cast<uint16_t*>(args.y);
  const int live_chunks = live_units * 2;  // 16-byte chunks per token row: 8 weight rows each
  // Y rows of n_out % 8 == 0 outputs are 16-byte aligned: whole chunks go out as one store, the rest (a row
  // length that is not, or the chunk holding the last real row) element by element up to n_out.
  const bool vector_rows = args.n_out % 8 == 0;
  for (int chunk = threadIdx.x - 128; chunk < kTok * C::kRows / 8; chunk += 256) {
    const int token = chunk / (C::kRows / 8), part = chunk % (C::kRows / 8);
    const int row = row_base + part * 8;
    if (token_base + token >= args.m || part >= live_chunks || row >= args.n_out) continue;
    uint32_t v[4];
    ld_shared_v4(smem_addr(smem + token * kTileStride + part * 16), v);
    uint16_t* out = y + static_cast<int64_t>(token_base + token) * args.n_out + row;
    if (vector_rows && row + 8 <= args.n_out) {
      *reinterpret_cast<uint4*>(out) = make_uint4(v[0], v[1], v[2], v[3]);
    } else {
      for (int e = 0; e < 8 && row + e < args.n_out; ++e)
        out[e] = static_cast<uint16_t>(v[e / 2] >> (16 * (e % 2)));
    }
  }
#endif  // QLLM_WGMMA_ENABLED
}

template <typename T, int kTok, int kWgTiles, int kScaleGroups, bool kMinOffset, bool kSplitTokens = false>
void launch_config(const W4A16KernelArgs& args, const W4A16WgmmaMaps& maps, cudaStream_t stream) {
  using C = Config<kTok, kWgTiles, kScaleGroups, kSplitTokens>;
  static_assert(C::kSmem <= 227 * 1024, "shared memory over the limit");
  static const bool configured = [] {
    QLLM_CUDA_CHECK(
        cudaFuncSetAttribute(w4a16_wgmma_kernel<T, kTok, kWgTiles, kScaleGroups, kSplitTokens, kMinOffset>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem));
    return true;
  }();
  (void)configured;
  if (args.configure_only) return;
  const dim3 grid((args.m + kTok - 1) / kTok, args.splits, (args.n + C::kRows - 1) / C::kRows);
  w4a16_wgmma_kernel<T, kTok, kWgTiles, kScaleGroups, kSplitTokens, kMinOffset>
      <<<grid, kThreads, C::kSmem, stream>>>(maps, args);
}

// The tile configurations (tokens, 64-row tiles per consumer warpgroup): 128 accumulators per thread at most.
template <typename T, int kScaleGroups, bool kMinOffset = false>
void launch_tile(const W4A16KernelArgs& args, const W4A16WgmmaMaps& maps, int tokens_per_cta,
                 int rows_per_cta, cudaStream_t stream) {
  if (rows_per_cta == 64) {  // 128 tokens split between the consumer warpgroups
    launch_config<T, 128, 1, kScaleGroups, kMinOffset, true>(args, maps, stream);
  } else if (tokens_per_cta == 64) {
    launch_config<T, 64, 2, kScaleGroups, kMinOffset>(args, maps, stream);
  } else if (tokens_per_cta == 128) {
    launch_config<T, 128, 2, kScaleGroups, kMinOffset>(args, maps, stream);
  } else {
    launch_config<T, 256, 1, kScaleGroups, kMinOffset>(args, maps, stream);
  }
}

template <typename T>
void launch_typed(const W4A16KernelArgs& args, const W4A16WgmmaMaps& maps, int tokens_per_cta,
                  int rows_per_cta, cudaStream_t stream) {
  if (args.min_offset) {  // groups of 32 only: plan() sends no other here (w4a16_wgmma_min_offset_supported)
    launch_tile<T, 2, true>(args, maps, tokens_per_cta, rows_per_cta, stream);
  } else if (args.group_steps == 1) {
    launch_tile<T, 4>(args, maps, tokens_per_cta, rows_per_cta, stream);
  } else if (args.group_steps == 2) {
    launch_tile<T, 2>(args, maps, tokens_per_cta, rows_per_cta, stream);
  } else {
    launch_tile<T, 1>(args, maps, tokens_per_cta, rows_per_cta, stream);
  }
}

}  // namespace

int w4a16_wgmma_scale_groups(int group_steps) {
  if (group_steps == 1 || group_steps == 2) return 4 / group_steps;
  return group_steps % 4 == 0 ? 1 : 0;
}

bool w4a16_wgmma_min_offset_supported(int group_steps) {
  return group_steps == 2;
}

int w4a16_wgmma_rows_per_cta(int tokens_per_cta) {
  return tokens_per_cta == 256 ? 128 : 256;
}

bool w4a16_wgmma_tile_supported(int tokens_per_cta, int rows_per_cta) {
  if (rows_per_cta == 64) return tokens_per_cta == 128;
  return (tokens_per_cta == 64 || tokens_per_cta == 128 || tokens_per_cta == 256) &&
         rows_per_cta == w4a16_wgmma_rows_per_cta(tokens_per_cta);
}

template <typename T>
void launch_w4a16_wgmma(const W4A16KernelArgs& args, const W4A16WgmmaMaps& maps, int tokens_per_cta,
                        int rows_per_cta, cudaStream_t stream) {
  launch_typed<T>(args, maps, tokens_per_cta, rows_per_cta, stream);
}
template void launch_w4a16_wgmma<Bf16>(const W4A16KernelArgs& args, const W4A16WgmmaMaps& maps,
                                       int tokens_per_cta, int rows_per_cta, cudaStream_t stream);
template void launch_w4a16_wgmma<F16>(const W4A16KernelArgs& args, const W4A16WgmmaMaps& maps,
                                      int tokens_per_cta, int rows_per_cta, cudaStream_t stream);

}  // namespace qllm::kernels

namespace qllm {

bool sm90a_kernels_available() {
  static PerDeviceFlag available;
  return available.get([](int device) {
    int major = 0, minor = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    return major == 9 && minor == 0 && QLLM_WGMMA_COMPILED;
  });
}

}  // namespace qllm
