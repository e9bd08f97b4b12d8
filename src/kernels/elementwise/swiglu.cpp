// SwiGLU host API: validates the parameters, then enqueues the kernel (swiglu.cu).
#include <algorithm>

#include "kernels/elementwise/swiglu.h"
#include "qllm/error.h"

namespace qllm {

void launch_swiglu(const SwigluParams& p, CUstream_st* stream) {
  QLLM_CHECK(p.dtype == DType::BF16 || p.dtype == DType::F16,
             "swiglu: activations must be bf16 or f16, not {}", dtype_name(p.dtype));
  QLLM_CHECK(p.tokens >= 0 && p.intermediate >= 1, "swiglu: bad shape: {} tokens, intermediate size {}",
             p.tokens, p.intermediate);
  // One thread per 8 outputs: the count must fit the grid (2^31 - 1 blocks of 256 threads).
  QLLM_CHECK(p.intermediate <= (int64_t{1} << 40) / std::max<int64_t>(p.tokens, 1),
             "swiglu: [{}, {}] is too large", p.tokens, p.intermediate);
  QLLM_CHECK(p.gate_up != nullptr && p.out != nullptr, "swiglu: null input or output");
  if (p.tokens == 0) return;
  detail::enqueue_swiglu(p, stream);
}

}  // namespace qllm
