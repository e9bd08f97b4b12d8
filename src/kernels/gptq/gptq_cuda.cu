// GPTQ column-loop kernels. The arithmetic is the CPU reference's (quant/gptq_ref.cpp, quant/int4_math.h):
// every weight is updated as w - e * u with single-rounded float operations (__fmul_rn / __fsub_rn: no fused
// multiply-add) in the same order as on the CPU, and group parameters are chosen from order-independent
// reductions (min/max, integer error sums), so the result is the CPU's bit for bit for the same factor.
#include <cstdint>

#include "kernels/gptq/gptq_launch.h"
#include "kernels/runtime/cuda_utils.h"

namespace qllm::kernels {

using int4::GroupParams;
using int4::GroupStats;

namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kBatchWarps = 8;  // rows per CTA of the batch kernel (one warp per row)

__device__ __forceinline__ uint64_t warp_sum(uint64_t v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// The parameters of the group values[0, n) as int4::choose_group_params computes them on the CPU: the range
// (min/max: any order), then the search's candidates in the CPU's order with exact integer error sums.
__device__ GroupParams warp_group_params(const float* values, int64_t n, const GptqLoopArgs& a) {
  const int lane = threadIdx.x & 31;
  GroupStats s{values[0], values[0]};
  for (int64_t i = lane; i < n; i += 32) {
    s.min = fminf(s.min, values[i]);
    s.max = fmaxf(s.max, values[i]);
  }
  for (int o = 16; o > 0; o >>= 1) {
    s.min = fminf(s.min, __shfl_xor_sync(kFullMask, s.min, o));
    s.max = fmaxf(s.max, __shfl_xor_sync(kFullMask, s.max, o));
  }
  if (a.search == ScaleSearch::None) return int4::group_params(s, 100, a.zero_point, a.bf16_scale);
  const bool squared = a.search == ScaleSearch::Mse;
  const float normalizer = int4::error_normalizer(s);
  auto error_at = [&](int percent) {
    const GroupParams p = int4::group_params(s, percent, a.zero_point, a.bf16_scale);
    uint64_t e = 0;
    for (int64_t i = lane; i < n; i += 32) e += int4::error_fixed_point(values[i], p, normalizer, squared);
    return warp_sum(e);
  };
  int best_coarse = int4::coarse_percent(0);
  uint64_t best_error = ~uint64_t{0};
  for (int i = 0; i < int4::kCoarseCandidates; ++i) {
    const uint64_t e = error_at(int4::coarse_percent(i));
    if (e < best_error) best_error = e, best_coarse = int4::coarse_percent(i);
  }
  int best = int4::fine_percent(best_coarse, 0);
  best_error = ~uint64_t{0};
  for (int i = 0; i < int4::kFineCandidates; ++i) {
    const uint64_t e = error_at(int4::fine_percent(best_coarse, i));
    if (e < best_error) best_error = e, best = int4::fine_percent(best_coarse, i);
  }
  return int4::group_params(s, best, a.zero_point, a.bf16_scale);
}

// One warp per row: the batch's weights and factor block in shared memory, columns in order.
__global__ void gptq_batch_kernel(GptqLoopArgs a, int64_t i1, int64_t i2) {
  extern __shared__ float smem[];
  const int nb = static_cast<int>(i2 - i1);
  float* ublk = smem;  // [nb][nb]
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  float* wr = smem + nb * nb + warp * nb;  // [nb] this warp's row
  for (int idx = threadIdx.x; idx < nb * nb; idx += blockDim.x) {
    ublk[idx] = a.u[(i1 + idx / nb) * a.cols + i1 + idx % nb];
  }
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kBatchWarps + warp;
  const bool active = row < a.rows;
  if (active) {
    for (int k = lane; k < nb; k += 32) wr[k] = a.work[row * a.cols + i1 + k];
  }
  __syncthreads();
  if (!active) return;

  GroupParams cur{};
  for (int64_t i = i1; i < i2; ++i) {
    const int64_t col = a.order[i];
    const int64_t g = a.groups_per_row == 0 ? 0 : row * a.groups_per_row + col / a.group_elems;
    if (a.dynamic_group != 0 && col % a.dynamic_group == 0) {
      // A group reached at the batch's start may reach past it: read it from the (fully updated) work
      // matrix. One that starts later lies inside the batch (gptq_batch_end): read the updated copy.
      const int64_t size = min(a.group_elems, a.cols - col);
      cur = warp_group_params(i == i1 ? a.work + row * a.cols + i : wr + (i - i1), size, a);
      if (lane == 0) a.params[g] = cur;
    } else if (a.dynamic_group == 0 || i == i1) {
      cur = a.params[g];
    }
    const int j = static_cast<int>(i - i1);
    const float w = wr[j];
    const uint8_t q = int4::quantize_value(w, cur);
    const float e = __fdiv_rn(__fsub_rn(w, int4::dequantize_value(q, cur.scale, cur.zero)), ublk[j * nb + j]);
    if (lane == 0) {
      a.nibbles[row * a.cols + col] = q;
      a.err[row * a.block + j] = e;
    }
    __syncwarp();
    for (int k = j + 1 + lane; k < nb; k += 32) wr[k] = __fsub_rn(wr[k], __fmul_rn(e, ublk[j * nb + k]));
    __syncwarp();
  }
}

constexpr int kTileRows = 64, kTileCols = 64, kTileJ = 32;

// work[:, i2:] -= err @ u[i1:i2, i2:]: 64x64 outputs per CTA, 4x4 per thread, the batch's rows of u and
// columns of err staged through shared memory 32 at a time; each output subtracts its terms in row order.
__global__ void __launch_bounds__(256) gptq_update_kernel(GptqLoopArgs a, int64_t i1, int64_t i2) {
  __shared__ float es[kTileRows][kTileJ + 1];
  __shared__ float us[kTileJ][kTileCols];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kTileRows;
  const int64_t c0 = i2 + static_cast<int64_t>(blockIdx.x) * kTileCols;
  const int nb = static_cast<int>(i2 - i1);
  float acc[4][4];
  for (int x = 0; x < 4; ++x) {
    for (int y = 0; y < 4; ++y) {
      const int64_t r = r0 + ty * 4 + x, c = c0 + tx * 4 + y;
      acc[x][y] = r < a.rows && c < a.cols ? a.work[r * a.cols + c] : 0.0f;
    }
  }
  for (int j0 = 0; j0 < nb; j0 += kTileJ) {
    for (int idx = threadIdx.x; idx < kTileRows * kTileJ; idx += blockDim.x) {
      const int r = idx / kTileJ, j = idx % kTileJ;
      es[r][j] = r0 + r < a.rows && j0 + j < nb ? a.err[(r0 + r) * a.block + j0 + j] : 0.0f;
    }
    for (int idx = threadIdx.x; idx < kTileJ * kTileCols; idx += blockDim.x) {
      const int j = idx / kTileCols, c = idx % kTileCols;
      us[j][c] = j0 + j < nb && c0 + c < a.cols ? a.u[(i1 + j0 + j) * a.cols + c0 + c] : 0.0f;
    }
    __syncthreads();
    const int jn = min(kTileJ, nb - j0);
    for (int j = 0; j < jn; ++j) {
      for (int x = 0; x < 4; ++x) {
        const float e = es[ty * 4 + x][j];
        for (int y = 0; y < 4; ++y) acc[x][y] = __fsub_rn(acc[x][y], __fmul_rn(e, us[j][tx * 4 + y]));
      }
    }
    __syncthreads();
  }
  for (int x = 0; x < 4; ++x) {
    for (int y = 0; y < 4; ++y) {
      const int64_t r = r0 + ty * 4 + x, c = c0 + tx * 4 + y;
      if (r < a.rows && c < a.cols) a.work[r * a.cols + c] = acc[x][y];
    }
  }
}

__global__ void factor_to_upper_kernel(const double* lower, float* out, int64_t n) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n * n) return;
  const int64_t r = idx / n, c = idx % n;
  out[idx] = c >= r ? static_cast<float>(lower[c + r * n]) : 0.0f;
}

}  // namespace

void launch_gptq_batch(const GptqLoopArgs& args, int64_t i1, int64_t i2, cudaStream_t stream) {
  const int64_t nb = i2 - i1;
  const size_t smem = static_cast<size_t>(nb * nb + kBatchWarps * nb) * sizeof(float);
  static bool configured = false;  // the attribute is per kernel and process: set it once
  if (!configured) {
    allow_all_dynamic_shared_memory(reinterpret_cast<const void*>(gptq_batch_kernel));
    configured = true;
  }
  const auto grid = static_cast<unsigned>(ceil_div(args.rows, kBatchWarps));
  gptq_batch_kernel<<<grid, kBatchWarps * 32, smem, stream>>>(args, i1, i2);
  QLLM_CUDA_CHECK_LAUNCH();
}

void launch_gptq_update(const GptqLoopArgs& args, int64_t i1, int64_t i2, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(args.cols - i2, kTileCols)),
                  static_cast<unsigned>(ceil_div(args.rows, kTileRows)));
  gptq_update_kernel<<<grid, 256, 0, stream>>>(args, i1, i2);
  QLLM_CUDA_CHECK_LAUNCH();
}

void launch_gptq_factor_to_upper(const double* lower, float* out, int64_t n, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(ceil_div(n * n, 256));
  factor_to_upper_kernel<<<blocks, 256, 0, stream>>>(lower, out, n);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace qllm::kernels
