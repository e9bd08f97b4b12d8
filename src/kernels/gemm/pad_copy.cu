// Strided 16-bit row copy with zero fill (pad_copy.h). Memory-bound and small next to the GEMM it serves
// (M x K or M x N elements against N x K weights), so plain element-wise loads and stores.
#include "kernels/gemm/pad_copy.h"
#include "kernels/runtime/cuda_utils.h"

namespace qllm::kernels {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    copy_rows_16_kernel(const uint16_t* __restrict__ src, int64_t src_cols, uint16_t* __restrict__ dst,
                        int64_t dst_cols, int64_t total, int64_t copy_cols) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t r = i / dst_cols, c = i % dst_cols;
    dst[i] = c < copy_cols ? src[r * src_cols + c] : uint16_t{0};
  }
}

}  // namespace

void launch_copy_rows_16(const void* src, int64_t src_cols, void* dst, int64_t dst_cols, int64_t rows,
                         int64_t copy_cols, cudaStream_t stream) {
  const int64_t total = rows * dst_cols;
  if (total == 0) return;
  const int64_t blocks = std::min<int64_t>(ceil_div(total, kThreads), int64_t{65535} * 8);
  copy_rows_16_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const uint16_t*>(src), src_cols, static_cast<uint16_t*>(dst), dst_cols, total, copy_cols);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace qllm::kernels
