// Split-K finish of the wide int8 GEMM: Y = sum of the scaled partials in split order (deterministic) plus
// the outlier columns in fp32, written as bf16/f16. One thread per output.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/gemm_int8_launch.h"
#include "quant/int8_math.h"

namespace qllm::kernels {

namespace {

__global__ void __launch_bounds__(256) int8_splitk_reduce_kernel(const Int8GemmArgs a) {
  const int64_t count = static_cast<int64_t>(a.m) * a.n;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const int token = static_cast<int>(i / a.n), row = static_cast<int>(i % a.n);
  float sum = 0.f;
  for (int sp = 0; sp < a.splits; ++sp) sum += __ldcs(a.partials + sp * count + i);
  const int outliers = min(a.status->outlier_count, kMaxOutlierColumns);
  const float w_absmax = a.w_absmax[row];
  for (int o = 0; o < outliers; ++o) {
    const uint16_t bits = a.x_outliers[static_cast<int64_t>(token) * kMaxOutlierColumns + o];
    const float x =
        a.bf16 ? __uint_as_float(static_cast<uint32_t>(bits) << 16) : __half2float(__ushort_as_half(bits));
    sum += x * int8q::dequantize(a.w[static_cast<int64_t>(row) * a.k + a.outlier_cols[o]], w_absmax);
  }
  static_cast<uint16_t*>(a.y)[i] =
      a.bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(sum)) : __half_as_ushort(__float2half_rn(sum));
}

}  // namespace

void launch_int8_splitk_reduce(const Int8GemmArgs& a, cudaStream_t stream) {
  const int64_t count = static_cast<int64_t>(a.m) * a.n;
  int8_splitk_reduce_kernel<<<static_cast<unsigned int>((count + 255) / 256), 256, 0, stream>>>(a);
}

}  // namespace qllm::kernels
