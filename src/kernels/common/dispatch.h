// The one way a kernel chooses its 16-bit activation type: a tag type (Bf16 or F16) as its template
// parameter, chosen once per host call from a runtime DType by dispatch_16bit(). Plain C++ (no CUDA
// headers), so host .cpp files dispatch and call the templated launchers that the .cu files instantiate;
// the device-side arithmetic of each tag is in common/numeric.cuh.
#pragma once

#include <cstdint>

#include "qllm/dtype.h"

namespace qllm::kernels {

struct Bf16 {
  static constexpr DType kDType = DType::BF16;
  static constexpr bool kIsBf16 = true;
  // The 16-bit pattern whose low mantissa bits can hold a nibble: 0x4300 | n == 128 + n (ulp 1 at 128).
  static constexpr uint32_t kNibbleMagic = 0x4300;
};

struct F16 {
  static constexpr DType kDType = DType::F16;
  static constexpr bool kIsBf16 = false;
  static constexpr uint32_t kNibbleMagic = 0x6400;  // 0x6400 | n == 1024 + n (ulp 1 at 1024)
};

// Throws qllm::Error: `what` takes bf16 or f16, not `dtype`.
[[noreturn]] void fail_not_16bit(DType dtype, const char* what);

// Calls f(Bf16{}) or f(F16{}) for a 16-bit float dtype; any other dtype is an error naming `what`.
template <typename F>
decltype(auto) dispatch_16bit(DType dtype, const char* what, F&& f) {
  if (dtype == DType::BF16) return f(Bf16{});
  if (dtype != DType::F16) fail_not_16bit(dtype, what);
  return f(F16{});
}

}  // namespace qllm::kernels
