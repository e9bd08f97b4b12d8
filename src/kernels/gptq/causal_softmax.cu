// The softmax of GPTQ's calibration attention (CausalAttentionF32Cuda, gptq_cuda.h): the score products are
// cuBLAS's; this kernel turns each row of scores into causal attention weights, in fp32 as the CPU reference
// engine's softmax (model/cpu_ops.cpp: the row's max subtracted, exp, the sum in double, one reciprocal).
#include <cstdint>

#include "kernels/gptq/gptq_launch.h"
#include "kernels/runtime/cuda_utils.h"

namespace qllm::kernels {

namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kRowsPerCta = 8;  // one warp per row

// scores [rows, len] row-major, row r = (head, query i): columns 0..i are the causal keys; the rest become 0.
__global__ void __launch_bounds__(kRowsPerCta * 32)
    causal_softmax_kernel(float* scores, int64_t rows, int len) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerCta + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const int keys = static_cast<int>(row % len) + 1;
  float* s = scores + row * len;
  float max = -INFINITY;
  for (int j = lane; j < keys; j += 32) max = fmaxf(max, s[j]);
  for (int o = 16; o > 0; o >>= 1) max = fmaxf(max, __shfl_xor_sync(kFullMask, max, o));
  double sum = 0.0;
  for (int j = lane; j < keys; j += 32) {
    const float e = expf(s[j] - max);
    s[j] = e;
    sum += e;
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(kFullMask, sum, o);
  const float inv = static_cast<float>(1.0 / sum);
  for (int j = lane; j < len; j += 32) s[j] = j < keys ? s[j] * inv : 0.0f;
}

}  // namespace

void launch_causal_softmax(float* scores, int64_t heads, int64_t len, cudaStream_t stream) {
  const int64_t rows = heads * len;
  if (rows == 0) return;
  const auto blocks = static_cast<unsigned>((rows + kRowsPerCta - 1) / kRowsPerCta);
  causal_softmax_kernel<<<blocks, kRowsPerCta * 32, 0, stream>>>(scores, rows, static_cast<int>(len));
}

}  // namespace qllm::kernels
