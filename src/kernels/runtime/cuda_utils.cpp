#include "kernels/runtime/cuda_utils.h"

#include <atomic>
#include <cstdlib>
#include <string_view>

namespace qllm {

void check_cuda(cudaError_t status, const char* expression, const char* file, int line) {
  if (status == cudaSuccess) return;
  fail("CUDA error {} at {}:{} in {}: {}", cudaGetErrorName(status), file, line, expression,
       cudaGetErrorString(status));
}

void fail_buffer_too_small(size_t needed, size_t capacity) {
  fail("copy of {} elements into a device buffer of {}", needed, capacity);
}

namespace {

// A device attribute of the current device, queried once per device.
template <cudaDeviceAttr kAttribute>
int cached_attribute() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> values[kMaxDevices] = {};  // 0: not asked yet (both attributes are positive)
  int device = 0;
  QLLM_CUDA_CHECK(cudaGetDevice(&device));
  QLLM_CHECK(device >= 0 && device < kMaxDevices, "CUDA device {} out of range", device);
  int value = values[device].load(std::memory_order_relaxed);
  if (value == 0) {
    QLLM_CUDA_CHECK(cudaDeviceGetAttribute(&value, kAttribute, device));
    values[device].store(value, std::memory_order_relaxed);
  }
  return value;
}

}  // namespace

int multiprocessor_count() {
  return cached_attribute<cudaDevAttrMultiProcessorCount>();
}

int max_dynamic_shared_memory() {
  return cached_attribute<cudaDevAttrMaxSharedMemoryPerBlockOptin>();
}

void allow_all_dynamic_shared_memory(const void* kernel) {
  cudaFuncAttributes attributes{};
  QLLM_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
  const int dynamic = max_dynamic_shared_memory() - static_cast<int>(attributes.sharedSizeBytes);
  QLLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, dynamic));
}

bool dependent_launch_available() {
  // QLLM_DEPENDENT_LAUNCH=0 launches every kernel plainly ordered: the baseline of a same-run measurement.
  static const bool disabled = [] {
    const char* value = std::getenv("QLLM_DEPENDENT_LAUNCH");
    return value != nullptr && std::string_view(value) == "0";
  }();
  if (disabled) return false;
  static PerDeviceFlag available;
  return available.get([](int device) {
    int major = 0;
    return cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
           major >= 9;
  });
}

void* device_alloc(size_t bytes, const char* what) {
  if (bytes == 0) return nullptr;
  void* ptr = nullptr;
  const cudaError_t status = cudaMalloc(&ptr, bytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    fail("out of GPU memory: allocating {:.1f} MiB for {} ({:.1f} MiB free of {:.1f} MiB)",
         static_cast<double>(bytes) / (1 << 20), what, static_cast<double>(free_bytes) / (1 << 20),
         static_cast<double>(total_bytes) / (1 << 20));
  }
  QLLM_CUDA_CHECK(status);
  return ptr;
}

void* pinned_alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  const cudaError_t status = cudaMallocHost(&p, bytes);
  QLLM_CHECK(status == cudaSuccess, "out of pinned host memory allocating {} bytes for {}: {}", bytes, what,
             cudaGetErrorString(status));
  return p;
}

}  // namespace qllm
