#include "qllm/dtype.h"

#include "qllm/error.h"

namespace qllm {

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "f32";
    case DType::F16:
      return "f16";
    case DType::BF16:
      return "bf16";
    case DType::I8:
      return "i8";
    case DType::U8:
      return "u8";
    case DType::I32:
      return "i32";
  }
  return "?";
}

DType parse_dtype(std::string_view name) {
  if (name == "f16" || name == "fp16" || name == "float16") return DType::F16;
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  if (name == "f32" || name == "fp32" || name == "float32") return DType::F32;
  fail("unknown dtype '{}' (expected f16, bf16 or f32)", name);
}

}  // namespace qllm
