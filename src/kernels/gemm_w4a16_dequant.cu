// W4A16 weights back to 16 bits, read from the repacked layout: out[N, K] = bf16/f16((q - z) * s), one rounding
// of the exact product (the same values the Hopper kernels feed their tensor cores). The first half of the
// "dequant" path for large M, where a 16-bit GEMM's compute dominates and cuBLAS does it best.
#include "kernels/gemm_w4a16_device.cuh"
#include "kernels/gemm_w4a16_launch.h"

namespace qllm::kernels {

namespace {

using namespace w4a16;

// One thread per 16-byte lane of a repacked unit: 32 weights of rows (g, g + 8) of a 16-row tile, four k16 steps.
template <typename T>
__global__ void __launch_bounds__(256) w4a16_dequant_kernel(const W4A16KernelArgs a, uint16_t* __restrict__ out) {
  const int64_t k_steps = a.k / 64;
  const int64_t lanes = static_cast<int64_t>(a.n / 16) * k_steps * 32;
  const int64_t id = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (id >= lanes) return;
  const int lane = static_cast<int>(id % 32), g = lane / 4, t = lane % 4;
  const int64_t unit = id / 32, tile = unit / k_steps, block = unit % k_steps;
  const uint4 w = load_weights(static_cast<const uint4*>(a.qweight) + id);
  const uint32_t words[4] = {w.x, w.y, w.z, w.w};
  const int64_t pair_base = tile * a.groups * 8 + g;
  uint32_t* row_lo = reinterpret_cast<uint32_t*>(out + (tile * 16 + g) * a.k + block * 64 + 2 * t);
  uint32_t* row_hi = row_lo + 8 * a.k / 2;
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    const int group = static_cast<int>((block * 4 + s) / a.group_steps);
    const uint32_t scale = __ldg(a.scales + pair_base + group * 8);
    const uint32_t zero = a.zero_offsets ? __ldg(a.zero_offsets + pair_base + group * 8)
                                         : ((T::kMagic + 8) | ((T::kMagic + 8) << 16));
    uint32_t r[4];
    dequant_step<T>(words[s], low_pair(zero), high_pair(zero), r);
    row_lo[8 * s] = mul2<T>(r[0], low_pair(scale));       // row g,     k 16s + 2t
    row_hi[8 * s] = mul2<T>(r[1], high_pair(scale));      // row g + 8
    row_lo[8 * s + 4] = mul2<T>(r[2], low_pair(scale));   // row g,     k 16s + 8 + 2t
    row_hi[8 * s + 4] = mul2<T>(r[3], high_pair(scale));  // row g + 8
  }
}

}  // namespace

void launch_w4a16_dequantize(const W4A16KernelArgs& a, bool bf16, void* out, cudaStream_t stream) {
  const int64_t lanes = static_cast<int64_t>(a.n / 16) * (a.k / 64) * 32;
  const auto blocks = static_cast<unsigned int>((lanes + 255) / 256);
  if (bf16) {
    w4a16_dequant_kernel<Bf16><<<blocks, 256, 0, stream>>>(a, static_cast<uint16_t*>(out));
  } else {
    w4a16_dequant_kernel<F16><<<blocks, 256, 0, stream>>>(a, static_cast<uint16_t*>(out));
  }
}

}  // namespace qllm::kernels
