#include "model/cpu_linear.h"

#include <algorithm>
#include <cmath>

#include "model/cpu_ops.h"
#include "model/prequantized.h"
#include "qllm/error.h"
#include "qllm/half.h"

namespace qllm {

namespace {

uint16_t round_to_16(float value, DType dtype) {
  return dtype == DType::BF16 ? float_to_bf16_bits(value) : float_to_half_bits(value);
}

}  // namespace

CpuLinear::CpuLinear(const WeightMatrix& source, const QuantMode& mode, DType activation) : mode_(mode) {
  weight_ = source;
  weight_.int4.reset();  // weight_ is what forward() reads: values, never the stored INT4
  if (keeps_stored_int4(source, mode, activation)) {  // pre-quantized: computed with as it is stored
    owned32_ = dequantize_int4_ref(*source.int4);
    weight_.dtype = DType::F32;
    weight_.data = owned32_.data();
    return;
  }
  switch (mode.kind) {
    case QuantMode::Kind::Dense: {
      if (source.dtype == mode.dense_dtype) return;  // used in place
      const std::vector<float> values = quantizer_source(source, activation);
      owned16_.resize(values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        owned16_[i] = round_to_16(values[i], mode.dense_dtype);
        const float back = mode.dense_dtype == DType::BF16 ? bf16_bits_to_float(owned16_[i])
                                                           : half_bits_to_float(owned16_[i]);
        QLLM_CHECK(std::isfinite(back), "{}: weight {} at [{}, {}] does not fit in {}", source.name,
                   values[i], static_cast<int64_t>(i) / source.cols, static_cast<int64_t>(i) % source.cols,
                   dtype_name(mode.dense_dtype));
      }
      weight_.dtype = mode.dense_dtype;
      weight_.data = owned16_.data();
      return;
    }
    case QuantMode::Kind::Int4: {
      owned32_ = dequantize_int4_ref(quantize_weight_int4(source, mode.int4, activation));
      break;
    }
    case QuantMode::Kind::Int8: {
      const std::vector<float> values = quantizer_source(source, activation);
      int8_ = quantize_int8_rows_ref(values, source.rows, source.cols);
      owned32_ = dequantize_int8_rows_ref(*int8_);
      break;
    }
  }
  weight_.dtype = DType::F32;
  weight_.data = owned32_.data();
}

void CpuLinear::forward(float* out, const float* x, int64_t tokens) const {
  if (!int8_) {
    cpu::matmul(out, x, tokens, weight_);
    return;
  }
  // LLM.int8(): columns holding any |x| >= threshold over the call's tokens stay f32; the rest of each token
  // row is quantized to int8 with its absmax (include/qllm/int8.h), here dequantized again, so the f32 product
  // with the dequantized weights equals the int8 product scaled by absmax_x * absmax_w / 127^2.
  const int64_t k = cols();
  const std::span<const float> input(x, static_cast<size_t>(tokens * k));
  const float threshold = mode_.int8_threshold;
  std::vector<uint8_t> outliers = outliers_enabled(threshold)
                                      ? outlier_columns_ref(input, tokens, k, threshold)
                                      : std::vector<uint8_t>(static_cast<size_t>(k), 0);
  const Int8Rows xq = quantize_int8_rows_ref(input, tokens, k, outliers);
  std::vector<float> effective = dequantize_int8_rows_ref(xq);  // [tokens, k]
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t c = 0; c < k; ++c) {
      if (outliers[static_cast<size_t>(c)]) effective[t * k + c] = x[t * k + c];
    }
  }
  cpu::matmul(out, effective.data(), tokens, weight_);
}

}  // namespace qllm
