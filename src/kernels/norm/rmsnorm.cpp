// RMSNorm host API: validates the parameters, then enqueues the kernel (rmsnorm.cu).
#include <cmath>

#include "kernels/runtime/cuda_utils.h"
#include "kernels/norm/rmsnorm.h"
#include "qllm/error.h"

namespace qllm {

void launch_rmsnorm(const RmsNormParams& p, CUstream_st* stream) {
  QLLM_CHECK(p.dtype == DType::BF16 || p.dtype == DType::F16,
             "rmsnorm: activations must be bf16 or f16, not {}", dtype_name(p.dtype));
  QLLM_CHECK(p.tokens >= 0 && p.tokens <= INT32_MAX, "rmsnorm: {} tokens (0..{})", p.tokens, INT32_MAX);
  QLLM_CHECK(p.hidden >= 1 && p.hidden <= 65536, "rmsnorm: hidden size {} outside 1..65536", p.hidden);
  QLLM_CHECK(std::isfinite(p.eps) && p.eps >= 0.0, "rmsnorm: eps must be finite and >= 0, got {}", p.eps);
  QLLM_CHECK((p.x != nullptr) != (p.residual != nullptr),
             "rmsnorm: set exactly one input: x (plain) or residual (fused with the residual add)");
  QLLM_CHECK(p.x == nullptr || p.delta == nullptr, "rmsnorm: delta is added to the residual, not to x");
  QLLM_CHECK(p.weight != nullptr && p.out != nullptr, "rmsnorm: null weight or output");
  if (p.tokens == 0) return;
  detail::enqueue_rmsnorm(p, stream);
}

}  // namespace qllm
