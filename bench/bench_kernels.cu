#include "bench/bench_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <type_traits>

#include "kernels/runtime/cuda_utils.h"

namespace qllm::bench {

namespace {

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Box-Muller on two uniforms hashed from (seed, pair index).
__global__ void fill_normal_kernel(void* out, int dtype, int64_t count, uint64_t seed, float mean,
                                   float stddev) {
  for (int64_t pair = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; 2 * pair < count;
       pair += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t h = mix64(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(pair));
    const float u1 = (static_cast<float>(h >> 40) + 1.0f) * 0x1p-24f;  // (0, 1]
    const float u2 = static_cast<float>((h >> 16) & 0xffffff) * 0x1p-24f;
    const float radius = sqrtf(-2.0f * logf(u1));
    float v[2];
    sincospif(2.0f * u2, &v[1], &v[0]);
    for (int j = 0; j < 2 && 2 * pair + j < count; ++j) {
      const float x = mean + stddev * radius * v[j];
      const int64_t i = 2 * pair + j;
      if (dtype == 0) static_cast<float*>(out)[i] = x;
      if (dtype == 1) static_cast<__half*>(out)[i] = __float2half_rn(x);
      if (dtype == 2) static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(x);
    }
  }
}

template <typename T>
__device__ __forceinline__ float load_as_float(const void* p, int64_t i) {
  if constexpr (sizeof(T) == 4) return static_cast<const float*>(p)[i];
  if constexpr (std::is_same_v<T, __half>) return __half2float(static_cast<const __half*>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

template <typename T>
__global__ void diff_kernel(const void* a, const void* b, int64_t count, DiffStats* out) {
  double abs_sum = 0, sq = 0, ref = 0;
  unsigned long long bad = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float x = load_as_float<T>(a, i), y = load_as_float<T>(b, i);
    bad += !isfinite(x);
    const double d = static_cast<double>(x) - y;
    abs_sum += fabs(d);
    sq += d * d;
    ref += static_cast<double>(y) * y;
  }
  for (int o = 16; o > 0; o >>= 1) {
    abs_sum += __shfl_xor_sync(0xffffffffu, abs_sum, o);
    sq += __shfl_xor_sync(0xffffffffu, sq, o);
    ref += __shfl_xor_sync(0xffffffffu, ref, o);
    bad += __shfl_xor_sync(0xffffffffu, bad, o);
  }
  if (threadIdx.x % 32 == 0) {
    atomicAdd(&out->sum_abs_diff, abs_sum);
    atomicAdd(&out->sum_sq_diff, sq);
    atomicAdd(&out->sum_sq_ref, ref);
    atomicAdd(&out->nonfinite, bad);
  }
}

__global__ void plant_kernel(void* x, int dtype, int64_t rows, int64_t cols, int column, float factor) {
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = r * cols + column;
    if (dtype == 1) {
      auto* p = static_cast<__half*>(x) + i;
      *p = __float2half_rn(__half2float(*p) * factor);
    } else {
      auto* p = static_cast<__nv_bfloat16*>(x) + i;
      *p = __float2bfloat16_rn(__bfloat162float(*p) * factor);
    }
  }
}

__global__ void dequantize_int8_kernel(const int8_t* values, const float* absmax, int64_t rows, int64_t cols,
                                       void* out, int dtype) {
  const int64_t count = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = __fdiv_rn(__fmul_rn(static_cast<float>(values[i]), absmax[i / cols]), 127.0f);
    if (dtype == 1) {
      static_cast<__half*>(out)[i] = __float2half_rn(v);
    } else {
      static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(v);
    }
  }
}

__global__ void spin_kernel(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}

int dtype_code(DType d) {
  return d == DType::F32 ? 0 : (d == DType::F16 ? 1 : 2);
}

}  // namespace

double DiffStats::rel_fro() const {
  return sum_sq_ref > 0 ? std::sqrt(sum_sq_diff / sum_sq_ref) : (sum_sq_diff > 0 ? INFINITY : 0.0);
}

void fill_normal_device(void* out, DType dtype, int64_t count, uint64_t seed, float mean, float stddev,
                        cudaStream_t stream) {
  fill_normal_kernel<<<4096, 256, 0, stream>>>(out, dtype_code(dtype), count, seed, mean, stddev);
  QLLM_CUDA_CHECK_LAUNCH();
}

DiffStats diff_stats_device(const void* a, const void* b, DType dtype, int64_t count) {
  DeviceBuffer<DiffStats> stats(1, "diff statistics");
  stats.fill_bytes(0);
  if (dtype == DType::F32) {
    diff_kernel<float><<<2048, 256>>>(a, b, count, stats.data());
  } else if (dtype == DType::F16) {
    diff_kernel<__half><<<2048, 256>>>(a, b, count, stats.data());
  } else {
    diff_kernel<__nv_bfloat16><<<2048, 256>>>(a, b, count, stats.data());
  }
  QLLM_CUDA_CHECK_LAUNCH();
  return stats.download()[0];
}

void plant_outlier_columns_device(void* x, DType dtype, int64_t rows, int64_t cols, int count, uint64_t seed,
                                  float factor) {
  uint64_t state = seed * 0x9e3779b97f4a7c15ull + 12345;
  for (int i = 0; i < count; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const int column = static_cast<int>((state >> 33) % static_cast<uint64_t>(cols));
    plant_kernel<<<64, 256>>>(x, dtype_code(dtype), rows, cols, column, factor);
  }
  QLLM_CUDA_CHECK_LAUNCH();
}

void dequantize_int8_rows_device(const int8_t* values, const float* absmax, int64_t rows, int64_t cols,
                                 void* out, DType dtype) {
  dequantize_int8_kernel<<<4096, 256>>>(values, absmax, rows, cols, out, dtype_code(dtype));
  QLLM_CUDA_CHECK_LAUNCH();
}

void spin_device(double microseconds, cudaStream_t stream) {
  static const double cycles_per_us = [] {
    int device = 0, khz = 0;
    QLLM_CUDA_CHECK(cudaGetDevice(&device));
    QLLM_CUDA_CHECK(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, device));
    return khz / 1000.0;
  }();
  spin_kernel<<<1, 1, 0, stream>>>(static_cast<long long>(microseconds * cycles_per_us));
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace qllm::bench
