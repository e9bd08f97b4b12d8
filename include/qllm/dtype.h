// Element types qllm stores and how their names read on the command line and in files.
#pragma once

#include <cstddef>
#include <string_view>

namespace qllm {

enum class DType { F32, F16, BF16 };

std::string_view dtype_name(DType dtype);  // "f32", "f16", "bf16"
DType parse_dtype(std::string_view name);  // accepts f16/fp16/float16, bf16/bfloat16, f32/fp32/float32
constexpr size_t dtype_size(DType dtype) {
  return dtype == DType::F32 ? 4 : 2;
}

}  // namespace qllm
