// W4A16 weights back to 16 bits, read from the repacked layout: out[n_out, x_cols] = bf16/f16((q - z) * s)
// (the real rows, and the columns X holds: K, or the padded K when X was padded), one rounding of the exact
// product (the same values the Hopper kernels feed their tensor cores); min offset: bf16/f16 of ggml's f32
// value u * s + m (W4A16Precision::RoundedWeights, bit for bit). The first half of the "dequant" path for
// large M, where a 16-bit GEMM's compute dominates and cuBLAS does it best.
#include "kernels/gemm/w4a16_device.cuh"
#include "kernels/gemm/w4a16_launch.h"

namespace qllm::kernels {

namespace {

using namespace w4a16;

constexpr int kWarps = 8;
// One unit's row of 64 weights, padded by 16 bytes so that stmatrix's eight rows fall in different banks.
constexpr int kTileRowBytes = 64 * 2 + 16;

// Puts the lane's A fragment of k16 step `s` in place in the unit's row-major tile: r[0] is (row g, columns
// 2t, 2t + 1), r[1] row g + 8, r[2] and r[3] the same rows 8 columns further (the m16n8k16 A layout).
__device__ __forceinline__ void store_fragment(uint8_t* tile, int s, int lane, const uint32_t (&r)[4]) {
#if __CUDA_ARCH__ >= 900
  // stmatrix (sm_90): lane l names row (l / 8 % 2) * 8 + l % 8 of 16-byte chunk l / 16 of the step.
  const int row = ((lane / 8) % 2) * 8 + lane % 8, chunk = lane / 16;
  const auto address =
      static_cast<uint32_t>(__cvta_generic_to_shared(tile + row * kTileRowBytes + (2 * s + chunk) * 16));
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(address), "r"(r[0]),
               "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
#else
  // Older GPUs: the same placement with one 4-byte store per register.
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i % 2), column = 16 * s + 2 * t + 8 * (i / 2);
    *reinterpret_cast<uint32_t*>(tile + row * kTileRowBytes + column * 2) = r[i];
  }
#endif
}

// One warp per repacked unit (16 rows x 64 weights): dequantize the lane's fragments, put them in place in a
// shared-memory tile (the inverse of the MMA fragment layout), then write the tile's rows to global memory as
// whole 128-byte lines; rows past n_out and 16-byte chunks past x_cols (a multiple of 8) are padding, not
// written.
template <typename T>
__global__ void __launch_bounds__(kWarps * 32)
    w4a16_dequant_kernel(const W4A16KernelArgs a, uint16_t* __restrict__ out) {
  __shared__ __align__(16) uint8_t tiles[kWarps][16 * kTileRowBytes];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4;
  const int64_t k_steps = a.k / 64;
  const int64_t unit = blockIdx.x * static_cast<int64_t>(kWarps) + warp;
  if (unit >= static_cast<int64_t>(a.n / 16) * k_steps) return;
  const int64_t tile = unit / k_steps, block = unit % k_steps;
  const uint4 w = load_weights(static_cast<const uint4*>(a.qweight) + unit * 32 + lane);
  const uint32_t words[4] = {w.x, w.y, w.z, w.w};
  const int64_t pair_base = tile * a.groups * 8 + g;
  uint8_t* smem = tiles[warp];
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    const int group = static_cast<int>((block * 4 + s) / a.group_steps);
    const uint32_t scale = __ldg(a.scales + pair_base + group * 8);
    const uint32_t zero = a.zero_offsets ? __ldg(a.zero_offsets + pair_base + group * 8)
                                         : ((T::kNibbleMagic + 8) | ((T::kNibbleMagic + 8) << 16));
    uint32_t r[4];
    if (a.min_offset) {
      // zero holds the minimums. u * s is exact in f32, so the fma's one rounding is ggml's f32 value;
      // then one rounding to the 16-bit type.
      const float scale_lo = to_float<T>(scale & 0xffffu), scale_hi = to_float<T>(scale >> 16);
      const float min_lo = to_float<T>(zero & 0xffffu), min_hi = to_float<T>(zero >> 16);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t word = words[s] >> (4 * i);  // register i: nibble i (element 0) and i + 4 (element 1)
        const float sc = i % 2 ? scale_hi : scale_lo, mn = i % 2 ? min_hi : min_lo;
        r[i] = pack2<T>(__fmaf_rn(static_cast<float>(word & 0xfu), sc, mn),
                        __fmaf_rn(static_cast<float>((word >> 16) & 0xfu), sc, mn));
      }
    } else {
      dequant_step<T>(words[s], low_pair(zero), high_pair(zero), r);
      r[0] = mul2<T>(r[0], low_pair(scale));   // rows g: one rounding of the exact (q - z) * s
      r[1] = mul2<T>(r[1], high_pair(scale));  // rows g + 8
      r[2] = mul2<T>(r[2], low_pair(scale));
      r[3] = mul2<T>(r[3], high_pair(scale));
    }
    store_fragment(smem, s, lane, r);
  }
  __syncwarp();
  // 16 rows x 128 bytes = 128 chunks of 16 bytes: four per lane, each row written by 8 consecutive lanes.
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int chunk = lane + 32 * i, row = chunk / 8, column = chunk % 8;
    const int64_t out_row = tile * 16 + row, out_col = block * 64 + column * 8;
    if (out_row >= a.n_out || out_col >= a.x_cols) continue;
    const uint4 v = *reinterpret_cast<const uint4*>(smem + row * kTileRowBytes + column * 16);
    *reinterpret_cast<uint4*>(out + out_row * a.x_cols + out_col) = v;
  }
}

}  // namespace

template <typename T>
void launch_w4a16_dequantize(const W4A16KernelArgs& a, void* out, cudaStream_t stream) {
  const int64_t units = static_cast<int64_t>(a.n / 16) * (a.k / 64);
  const auto blocks = static_cast<unsigned int>((units + kWarps - 1) / kWarps);
  w4a16_dequant_kernel<T><<<blocks, kWarps * 32, 0, stream>>>(a, static_cast<uint16_t*>(out));
}
template void launch_w4a16_dequantize<Bf16>(const W4A16KernelArgs& a, void* out, cudaStream_t stream);
template void launch_w4a16_dequantize<F16>(const W4A16KernelArgs& a, void* out, cudaStream_t stream);

}  // namespace qllm::kernels
