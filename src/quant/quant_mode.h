// The weight format of a model's linear layers, as users name it (`--quant`): 16-bit floats, INT4 in any
// scheme, or LLM.int8(). One QuantMode for the whole model, with the lm_head (and a tied embedding) allowed
// its own (`--quant-lm-head`).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "qllm/dtype.h"
#include "qllm/int8.h"
#include "qllm/quant.h"

namespace qllm {

struct QuantMode {
  enum class Kind { Dense, Int4, Int8 };
  Kind kind = Kind::Dense;
  DType dense_dtype = DType::BF16;  // Dense: bf16 or f16 weights
  Int4Scheme int4;                  // Int4: the scheme (scales stored in the activation dtype)
  float int8_threshold = kDefaultOutlierThreshold;  // Int8: LLM.int8()'s outlier threshold

  // bf16 | f16 | int4-global | int4-rowwise | int4-g<N> | int4-g<N>-asym | int8 (N: an even group size,
  // 16 ... 4096). qllm::Error listing these forms for anything else.
  static QuantMode parse(std::string_view name);
  // The form parse() reads back; a min-offset scheme (a GGUF Q4_1 file's, only ever run as stored) shows as
  // int4-g32-min, which parse() refuses.
  std::string name() const;
  bool is_dense() const { return kind == Kind::Dense; }

  // Bytes a [rows, cols] weight takes in this mode (packed values, scales, zero points or minimums).
  uint64_t stored_bytes(int64_t rows, int64_t cols) const;
};

// The modes of a whole model: every linear layer in `linear`, the lm_head (and, when tied, the embedding
// table it shares) in `lm_head`. Default: the lm_head takes the same mode as the other layers, because it
// is a fifth of a small model's weight bytes (Llama-3.2-1B: 263M of 1.24B parameters) and decode reads it
// for every token; `--quant-lm-head bf16` keeps it 16-bit where quality matters more than speed.
struct ModelQuant {
  QuantMode linear;
  QuantMode lm_head;
  // The activations' dtype when it is not the default below: a pre-quantized checkpoint runs with its scales'
  // dtype (GPTQ and AWQ store f16 scales), since the kernels read scales in the activation dtype.
  std::optional<DType> activation;

  // `linear` as QuantMode::parse reads it; `lm_head` "same" (or empty) or another mode.
  static ModelQuant parse(std::string_view linear, std::string_view lm_head = "same");
  // "int4-g128", or "int4-g128, lm_head bf16" when they differ; ", f16 activations" when set otherwise
  std::string name() const;
  // The activations' dtype: `activation` when set, else f16 when the layers are f16 weights, else bf16.
  DType activation_dtype() const {
    if (activation) return *activation;
    return linear.is_dense() && linear.dense_dtype == DType::F16 ? DType::F16 : DType::BF16;
  }
};

}  // namespace qllm
