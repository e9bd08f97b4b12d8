// Split-K reduction for the W4A16 GEMM: Y = sum over splits of partials[split] (fp32, added in split order,
// so the result does not depend on scheduling), written as bf16/f16. One thread per 8 consecutive outputs.
#include "kernels/gemm/w4a16_device.cuh"
#include "kernels/gemm/w4a16_launch.h"

namespace qllm::kernels {

namespace {

template <typename T>
__global__ void __launch_bounds__(256) splitk_reduce_kernel(const W4A16KernelArgs args) {
  const int64_t count =
      static_cast<int64_t>(args.m) * args.n;  // padded n % 64 == 0: groups of 8 never straddle rows
  const int64_t first = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) * 8;
  if (first >= count) return;
  const int64_t token = first / args.n;
  const int row = static_cast<int>(first % args.n);
  if (row >= args.n_out) return;  // padding rows: no output
  float sum[8] = {};
  for (int sp = 0; sp < args.splits; ++sp) {
    const float4* p = reinterpret_cast<const float4*>(args.partials + sp * count + first);
    const float4 a = __ldcs(p), b = __ldcs(p + 1);
    sum[0] += a.x, sum[1] += a.y, sum[2] += a.z, sum[3] += a.w;
    sum[4] += b.x, sum[5] += b.y, sum[6] += b.z, sum[7] += b.w;
  }
  auto* y = static_cast<uint16_t*>(args.y) + token * args.n_out + row;
  if (args.n_out % 8 == 0) {  // Y's rows are 16-byte aligned and the 8 outputs all real: one store
    uint32_t packed[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) packed[i] = pack2<T>(sum[2 * i], sum[2 * i + 1]);
    *reinterpret_cast<uint4*>(y) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    return;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    if (row + i < args.n_out) y[i] = from_float<T>(sum[i]);
  }
}

}  // namespace

template <typename T>
void launch_splitk_reduce(const W4A16KernelArgs& args, cudaStream_t stream) {
  const int64_t threads = (static_cast<int64_t>(args.m) * args.n + 7) / 8;
  const auto blocks = static_cast<unsigned int>((threads + 255) / 256);
  splitk_reduce_kernel<T><<<blocks, 256, 0, stream>>>(args);
}
template void launch_splitk_reduce<Bf16>(const W4A16KernelArgs& args, cudaStream_t stream);
template void launch_splitk_reduce<F16>(const W4A16KernelArgs& args, cudaStream_t stream);

}  // namespace qllm::kernels
