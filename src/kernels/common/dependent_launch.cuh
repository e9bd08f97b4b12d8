// Programmatic dependent launch (sm_90+): a kernel launched with
// cudaLaunchAttributeProgrammaticStreamSerialization may be scheduled while the kernel before it in the
// stream is still running, so its launch latency and prologue (barrier setup, tensor-map prefetch) overlap
// that kernel's tail. It must call wait_for_previous_kernel() before it reads anything the previous kernels
// wrote. Elsewhere (older GPUs, host pass) both calls compile to nothing and launches stay plainly ordered.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "kernels/runtime/cuda_utils.h"

namespace qllm::kernels {

// Returns once every earlier kernel in the stream has finished and its writes are visible.
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel (if launched as a dependent) be scheduled now; it still waits for this one's results.
__device__ __forceinline__ void let_next_kernel_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Launches `kernel` as a dependent of the kernel before it in the stream where the GPU supports it (it must
// call wait_for_previous_kernel() before reading earlier results), as a plain ordered launch elsewhere.
template <typename... Params, typename... Args>
void launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                      Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute dependent = dependent_launch_attribute();
  if (dependent_launch_available()) {
    config.attrs = &dependent;
    config.numAttrs = 1;
  }
  QLLM_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

}  // namespace qllm::kernels
