// W4A16 GEMM, wgmma path: Y[M, N] = X[M, K] @ W'[N, K]^T for large M (prefill) on Hopper's wgmma (sm_90a).
//
// Compute-bound: the dequantization must hide under the tensor cores. How:
//  - Y^T = W' X^T: the weights are wgmma's A operand, taken from registers, so they are dequantized in
//    registers (lop3 magic + packed subtract + packed scale multiply) straight into the A fragment, one
//    16-byte load per thread per 64-wide k step (the repacked layout of docs/FORMATS.md);
//  - the activations are wgmma's B operand: a [tokens x 64] tile per k step, copied with cp.async into shared
//    memory in the 128-byte swizzled K-major layout the B descriptor names, kStages deep;
//  - two warpgroups of 4 warps, each owning kWgTiles 64-row weight tiles; wgmma runs asynchronously while the
//    warpgroup dequantizes the next step's weights into the other register buffer;
//  - split-K when the output has too few tiles to fill the GPU: partial sums, then a separate reduction pass.
#include <type_traits>

#include "kernels/gemm_w4a16_launch.h"

#include "kernels/cuda_utils.h"
#include "kernels/gemm_w4a16_device.cuh"
#include "kernels/hopper.cuh"
#include "kernels/wgmma_ops.cuh"

namespace qllm::kernels {

namespace {

using namespace w4a16;
using namespace sm90;

constexpr int kStepK = 64;  // one swizzle row of activations (128 bytes) and one repacked unit per step
constexpr int kStages = 4;  // activation stages; cp.async runs kStages - 2 steps ahead of the MMAs

template <int kTok>
constexpr int smem_bytes() {
  return kStages * kTok * kStepK * 2 + 1024;  // + slack to align the tiles to 1024 bytes (the swizzle atom)
}

// kTok tokens x (kWgs warpgroups x kWgTiles 64-row tiles) per CTA, one CTA per SM.
template <typename T, int kTok, int kWgTiles, int kWgs>
__global__ void __launch_bounds__(128 * kWgs, 1) w4a16_wgmma_kernel(const W4A16KernelArgs args) {
#if QLLM_WGMMA_ENABLED
  constexpr int kThreads = 128 * kWgs;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = sm90::align_1024(smem_raw);
  constexpr int kStageBytes = kTok * kStepK * 2;
  constexpr int kAcc = kTok / 2;  // accumulators per thread per 64-row tile

  const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int g = lane / 4;
  // Token tiles vary fastest across the grid: the CTAs that share a weight tile run at the same time and
  // read it from DRAM once (L2 serves the others).
  const int row_base =
      blockIdx.z * (64 * kWgTiles * kWgs) + wg * (64 * kWgTiles);  // this warpgroup's first row
  const int token_base = blockIdx.x * kTok;
  const int split = blockIdx.y;
  const int k_steps = args.k / kStepK;
  const int step_begin = split * args.steps_per_split;
  const int steps = max(min(step_begin + args.steps_per_split, k_steps) - step_begin, 0);

  bool tile_active[kWgTiles];
  int tile16[kWgTiles];  // this warp's 16-row tile index for each of the warpgroup's 64-row tiles
#pragma unroll
  for (int i = 0; i < kWgTiles; ++i) {
    tile_active[i] = row_base + 64 * i < args.n;  // N % 64 == 0: a 64-row tile is all in or all out
    tile16[i] = (row_base + 64 * i) / 16 + warp;
  }

  // ---- activations: step s's [kTok x 64] slice into stage s % kStages, 128-byte swizzled ----
  const auto* x = static_cast<const uint16_t*>(args.x);
  // The odd tail step of the unrolled main loop (s == steps) gets a zero-filled stage: its zero weight
  // fragments times uninitialized shared memory could otherwise be 0 * NaN.
  const int padded_steps = steps + (steps & 1);
  auto load_x_step = [&](int s) {
    if (s < padded_steps) {
      const int k0 = (step_begin + min(s, steps - 1)) * kStepK;
      uint8_t* stage = smem + (s % kStages) * kStageBytes;
#pragma unroll
      for (int chunk = threadIdx.x; chunk < kTok * 8; chunk += kThreads) {
        const int row = chunk / 8, col = chunk % 8;  // 16-byte chunk `col` of token row `row`
        const int token = token_base + row;
        const bool valid = s < steps && token < args.m;
        cp_async_16(stage + row * 128 + ((col ^ (row & 7)) * 16),
                    x + (valid ? static_cast<int64_t>(token) * args.k + k0 + col * 8 : 0), valid);
      }
    }
    cp_async_commit();
  };

  // ---- weights: raw 16-byte units, dequantized into A fragments (exact (q - z), times the scale) ----
  const auto* units = static_cast<const uint4*>(args.qweight);
  auto load_w_step = [&](int s, uint4(&w)[kWgTiles]) {
#pragma unroll
    for (int i = 0; i < kWgTiles; ++i) {
      if (tile_active[i] && s < steps) {
        w[i] = load_weights(units + (static_cast<int64_t>(tile16[i]) * k_steps + step_begin + s) * 32 + lane);
      }
    }
  };
  // Steps past the end (the odd tail of the unrolled loop) and tiles past N get zero fragments: their
  // wgmmas add nothing, and every wgmma stays on the warpgroup's convergent path (ptxas serializes wgmma
  // issued under branches it cannot prove uniform).
  auto dequant_w_step = [&](int s, const uint4(&w)[kWgTiles], uint32_t(&a)[kWgTiles][4][4]) {
#pragma unroll
    for (int i = 0; i < kWgTiles; ++i) {
      if (s >= steps || !tile_active[i]) {
#pragma unroll
        for (int j = 0; j < 4; ++j) a[i][j][0] = a[i][j][1] = a[i][j][2] = a[i][j][3] = 0u;
        continue;
      }
      const uint32_t words[4] = {w[i].x, w[i].y, w[i].z, w[i].w};
      const int64_t pair_base = static_cast<int64_t>(tile16[i]) * args.groups * 8 + g;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int group = ((step_begin + s) * 4 + j) / args.group_steps;
        const uint32_t scale = __ldg(args.scales + pair_base + group * 8);
        uint32_t zero = (T::kMagic + 8) | ((T::kMagic + 8) << 16);
        if (args.zero_offsets != nullptr) zero = __ldg(args.zero_offsets + pair_base + group * 8);
        dequant_step<T>(words[j], low_pair(zero), high_pair(zero), a[i][j]);
        const uint32_t scale_lo = low_pair(scale), scale_hi = high_pair(scale);
        a[i][j][0] = mul2<T>(a[i][j][0], scale_lo);  // rows g: one rounding of the exact (q - z) * s
        a[i][j][1] = mul2<T>(a[i][j][1], scale_hi);  // rows g + 8
        a[i][j][2] = mul2<T>(a[i][j][2], scale_lo);
        a[i][j][3] = mul2<T>(a[i][j][3], scale_hi);
      }
    }
  };

  float acc[kWgTiles][kAcc];
#pragma unroll
  for (int i = 0; i < kWgTiles; ++i) {
#pragma unroll
    for (int r = 0; r < kAcc; ++r) acc[i][r] = 0.f;
  }
  uint32_t a_frag[2][kWgTiles][4]
                 [4];  // double buffer: step s's fragments stay untouched while its wgmma runs
  uint4 w_next[kWgTiles], w_after[kWgTiles];

  load_x_step(0);
  load_x_step(1);
  {
    uint4 w0[kWgTiles];
    load_w_step(0, w0);
    load_w_step(1, w_next);
    load_w_step(2, w_after);
    dequant_w_step(0, w0, a_frag[0]);
  }

  // One k step. kCur is the register buffer holding step s's fragments; kCur ^ 1 receives step s + 1's.
  auto step = [&](int s, auto cur_tag) {
    constexpr int kCur = decltype(cur_tag)::value, kNext = kCur ^ 1;
    cp_async_wait<kStages - 3>();
    asm volatile("fence.proxy.async.shared::cta;" ::
                     : "memory");  // cp.async writes -> wgmma (async proxy) reads
    __syncthreads();  // step s's activations are in; both warpgroups are done with step s - 2's stage
    load_x_step(s + kStages - 2);

    const uint8_t* stage = smem + (s % kStages) * kStageBytes;
#pragma unroll
    for (int i = 0; i < kWgTiles; ++i) keep(acc[i]);
    wgmma_fence();
#pragma unroll
    for (int i = 0; i < kWgTiles; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        Wgmma<kTok, T::kIsBf16>::mma(acc[i], a_frag[kCur][i][j], sw128_descriptor(stage + 32 * j), 1);
      }
    }
    wgmma_commit();
    wgmma_wait<1>();  // step s - 1's wgmma is done: its fragments (buffer kNext) may be overwritten
#pragma unroll
    for (int i = 0; i < kWgTiles; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) keep(a_frag[kNext][i][j]);
    }
    dequant_w_step(s + 1, w_next, a_frag[kNext]);
#pragma unroll
    for (int i = 0; i < kWgTiles; ++i) w_next[i] = w_after[i];
    load_w_step(s + 3, w_after);
  };
  // Unrolled by two so that the register buffers have fixed names; an odd tail runs one step of zeros.
  for (int s = 0; s < steps; s += 2) {
    step(s, std::integral_constant<int, 0>{});
    step(s + 1, std::integral_constant<int, 1>{});
  }
  wgmma_wait<0>();
#pragma unroll
  for (int i = 0; i < kWgTiles; ++i) keep(acc[i]);
  cp_async_wait<0>();

  // ---- epilogue: acc[i][4c + e] is row 16 * warp + g + 8 * (e / 2), token 8c + 2t + (e % 2) ----
  const int t = lane % 4;
  auto* y = static_cast<uint16_t*>(args.y);
  const bool partial = args.splits > 1;
#pragma unroll
  for (int i = 0; i < kWgTiles; ++i) {
    if (!tile_active[i]) continue;
    const int row0 = row_base + 64 * i + 16 * warp + g;
#pragma unroll
    for (int r = 0; r < kAcc; ++r) {
      const int token = token_base + 8 * (r / 4) + 2 * t + (r % 2);
      const int row = row0 + 8 * ((r % 4) / 2);
      if (token >= args.m) continue;
      if (partial) {
        args.partials[(static_cast<int64_t>(split) * args.m + token) * args.n + row] = acc[i][r];
      } else {
        y[static_cast<int64_t>(token) * args.n + row] = float_to_output<T>(acc[i][r]);
      }
    }
  }
  // With split-K, launch_splitk_reduce adds the partial sums afterwards.
#endif  // QLLM_WGMMA_ENABLED
}

template <typename T, int kTok, int kWgTiles, int kWgs>
void launch_config(const W4A16KernelArgs& args, cudaStream_t stream) {
  constexpr int kSmem = smem_bytes<kTok>();
  static const bool configured = [] {
    QLLM_CUDA_CHECK(cudaFuncSetAttribute(w4a16_wgmma_kernel<T, kTok, kWgTiles, kWgs>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    return true;
  }();
  (void)configured;
  constexpr int kRows = 64 * kWgTiles * kWgs;
  const dim3 grid((args.m + kTok - 1) / kTok, args.splits, (args.n + kRows - 1) / kRows);
  w4a16_wgmma_kernel<T, kTok, kWgTiles, kWgs><<<grid, 128 * kWgs, kSmem, stream>>>(args);
}

// The configurations: (tokens, 64-row tiles per warpgroup, warpgroups), accumulators within the registers.
template <typename T>
void launch_typed(const W4A16KernelArgs& args, int tokens_per_cta, int warpgroups, cudaStream_t stream) {
  if (tokens_per_cta == 64) {
    if (warpgroups == 4) {
      launch_config<T, 64, 1, 4>(args, stream);
    } else {
      launch_config<T, 64, 2, 2>(args, stream);
    }
  } else if (tokens_per_cta == 128) {
    if (warpgroups == 3) {
      launch_config<T, 128, 1, 3>(args, stream);
    } else {
      launch_config<T, 128, 2, 2>(args, stream);
    }
  } else {
    launch_config<T, 256, 1, 2>(args, stream);
  }
}

}  // namespace

int w4a16_wgmma_warpgroups(int tokens_per_cta, int requested) {
  if (tokens_per_cta == 64) return requested == 4 ? 4 : 2;
  if (tokens_per_cta == 128) return requested == 3 ? 3 : 2;
  return 2;
}

int w4a16_wgmma_rows_per_cta(int tokens_per_cta, int warpgroups) {
  const int tiles = (tokens_per_cta == 256 || warpgroups > 2) ? 1 : 2;
  return 64 * tiles * warpgroups;
}

void launch_w4a16_wgmma(const W4A16KernelArgs& args, bool bf16, int tokens_per_cta, int warpgroups,
                        cudaStream_t stream) {
  if (bf16) {
    launch_typed<Bf16>(args, tokens_per_cta, warpgroups, stream);
  } else {
    launch_typed<F16>(args, tokens_per_cta, warpgroups, stream);
  }
}

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
