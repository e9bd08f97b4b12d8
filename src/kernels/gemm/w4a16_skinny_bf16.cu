// Skinny W4A16 kernels for bf16 activations (the kernel is w4a16_skinny.cuh).
#include "kernels/gemm/w4a16_skinny.cuh"

namespace qllm::kernels {

template void launch_w4a16_skinny<Bf16>(const W4A16KernelArgs& args, int tok_tiles, int warps_k,
                                        cudaStream_t stream, const XPrologue& prologue);

}  // namespace qllm::kernels
