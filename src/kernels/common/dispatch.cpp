#include "kernels/common/dispatch.h"

#include "qllm/error.h"

namespace qllm::kernels {

void fail_not_16bit(DType dtype, const char* what) {
  fail("{} takes bf16 or f16, not {}", what, dtype_name(dtype));
}

}  // namespace qllm::kernels
