// Programmatic dependent launch (sm_90+): a kernel launched with
// cudaLaunchAttributeProgrammaticStreamSerialization may be scheduled while the kernel before it in the
// stream is still running, so its launch latency and prologue (barrier setup, tensor-map prefetch) overlap
// that kernel's tail. It must call wait_for_previous_kernel() before it reads anything the previous kernels
// wrote. Elsewhere (older GPUs, host pass) both calls compile to nothing and launches stay plainly ordered.
#pragma once

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

}  // namespace qllm::kernels
