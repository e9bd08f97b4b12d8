// Skinny W4A16 kernels for f16 activations (the kernel is gemm_w4a16_skinny.cuh).
#include "kernels/gemm_w4a16_skinny.cuh"

namespace qllm::kernels {

void launch_w4a16_skinny_f16(const W4A16KernelArgs& args, int tok_tiles, int warps_k, cudaStream_t stream) {
  skinny::launch_typed<w4a16::F16>(args, tok_tiles, warps_k, stream);
}

}  // namespace qllm::kernels
