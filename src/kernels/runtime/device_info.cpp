#include "kernels/runtime/device_info.h"

#include <string>

#if QLLM_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qllm {

DeviceInfo query_device() {
  DeviceInfo info;
#if QLLM_HAVE_CUDA
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    // Without a GPU the runtime reports "CUDA driver version is insufficient for CUDA runtime version"
    // (no driver at all) or "no CUDA-capable device is detected": both mean the same to a user.
    info.reason = "no CUDA GPU or driver found";
    if (status != cudaSuccess && status != cudaErrorNoDevice && status != cudaErrorInsufficientDriver) {
      info.reason += std::string(" (") + cudaGetErrorString(status) + ")";
    }
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return info;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    info.reason = "cudaGetDeviceProperties failed";
    return info;
  }
  info.available = true;
  info.name = prop.name;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  info.l2_bytes = static_cast<size_t>(prop.l2CacheSize);
  info.global_memory_bytes = prop.totalGlobalMem;
#else
  info.reason = "qllm was built without CUDA (QLLM_CUDA=OFF)";
#endif
  return info;
}

}  // namespace qllm
