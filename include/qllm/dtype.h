// Element types and how their names read on the command line and in files: the floating-point types qllm
// computes in (F32, F16, BF16) and the integer types checkpoints also store (I8, U8, I32: e.g. the packed
// weights of GPTQ checkpoints, read through model/safetensors.h).
#pragma once

#include <cstddef>
#include <string_view>

namespace qllm {

enum class DType { F32, F16, BF16, I8, U8, I32 };

std::string_view dtype_name(DType dtype);  // "f32", "f16", "bf16", "i8", "u8", "i32"
// A floating-point dtype by name: f16/fp16/float16, bf16/bfloat16, f32/fp32/float32.
DType parse_dtype(std::string_view name);
constexpr bool is_float(DType dtype) {
  return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}
constexpr size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32:
    case DType::I32:
      return 4;
    case DType::F16:
    case DType::BF16:
      return 2;
    case DType::I8:
    case DType::U8:
      return 1;
  }
  return 0;
}

}  // namespace qllm
