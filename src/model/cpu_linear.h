// One linear layer of the CPU reference engine in a quantization mode: out[tokens, n] = x[tokens, k] @ W'^T,
// with W' the weight as the GPU engine stores it, so that the CPU reference is the spec of every mode:
//   dense bf16/f16: the weight rounded to that dtype;
//   int4: quantized by the CPU reference quantizer (bit-identical to the CUDA one) and dequantized exactly;
//   int8: LLM.int8() rows, and the activations quantized per token as the int8 GEMM does (outlier columns of
//         the call kept in full precision), computed in f32.
// Weights given in f32 are first rounded to the activation dtype, as the GPU engine uploads them. A
// pre-quantized weight (WeightMatrix::int4) is computed with exactly as stored when the mode keeps it
// (model/prequantized.h), else its reconstruction is the source.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "model/llama_weights.h"
#include "qllm/int8.h"
#include "quant/quant_mode.h"

namespace qllm {

class CpuLinear {
 public:
  CpuLinear() = default;
  // `activation`: the engine's activation dtype (bf16 or f16), to which f32 source weights are rounded.
  CpuLinear(const WeightMatrix& source, const QuantMode& mode, DType activation);

  int64_t rows() const { return weight_.rows; }  // N, output features
  int64_t cols() const { return weight_.cols; }  // K, input features
  const QuantMode& mode() const { return mode_; }
  uint64_t stored_bytes() const { return mode_.stored_bytes(rows(), cols()); }

  // out[tokens, rows()] = x[tokens, cols()] @ W'^T.
  void forward(float* out, const float* x, int64_t tokens) const;
  // Row `row` of W' (the embedding of a tied model reads the lm_head's rows).
  void row_to_f32(int64_t row, float* out) const { weight_.row_to_f32(row, out); }

 private:
  QuantMode mode_;
  WeightMatrix weight_;            // the weight computed with: a view of the source, or of `owned_`
  std::vector<uint16_t> owned16_;  // dense: the source rounded to 16 bits
  std::vector<float> owned32_;     // int4 / int8: the dequantized weight
  std::optional<Int8Rows> int8_;   // int8: the quantized rows (their dequantization is owned32_)
};

}  // namespace qllm
