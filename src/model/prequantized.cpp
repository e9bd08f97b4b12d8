#include "model/prequantized.h"

#include <fmt/format.h>

#include "qllm/error.h"
#include "qllm/half.h"

namespace qllm {

std::vector<float> quantizer_source(const WeightMatrix& w, DType activation) {
  std::vector<float> values(static_cast<size_t>(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) w.row_to_f32(r, values.data() + r * w.cols);
  if (w.dtype == DType::F32) {
    for (float& v : values) {
      v = activation == DType::BF16 ? bf16_bits_to_float(float_to_bf16_bits(v))
                                    : half_bits_to_float(float_to_half_bits(v));
    }
  }
  return values;
}

Int4Matrix quantize_weight_int4(const WeightMatrix& w, const Int4Scheme& scheme, DType activation) {
  Int4Scheme s = scheme;
  s.scale_dtype = activation;
  return quantize_int4_ref(quantizer_source(w, activation), w.rows, w.cols, s);
}

bool keeps_stored_int4(const WeightMatrix& w, const QuantMode& mode, DType activation) {
  if (!w.int4 || mode.kind != QuantMode::Kind::Int4) return false;
  Int4Scheme wanted = mode.int4;
  wanted.scale_dtype = activation;
  return same_stored_format(w.int4->scheme, wanted);
}

namespace {

// The mode of one pre-quantized weight: INT4 in its stored format.
QuantMode int4_mode(const Int4Scheme& scheme) {
  QuantMode m;
  m.kind = QuantMode::Kind::Int4;
  m.int4 = scheme;
  m.int4.search = ScaleSearch::None;
  return m;
}

// The stored format shared by `matrices` (nullptr when none is pre-quantized); all or none must be.
const WeightMatrix* common_format(std::span<const WeightMatrix* const> matrices) {
  const WeightMatrix* first = nullptr;
  for (const WeightMatrix* m : matrices) {
    if (!first) {
      first = m;
      continue;
    }
    QLLM_CHECK(m->quantized() == first->quantized(),
               "{} is {} but {} is {}: running a model as stored needs every layer in one format (pass an "
               "explicit --quant)",
               m->name, m->quantized() ? "INT4" : "16-bit", first->name,
               first->quantized() ? "INT4" : "16-bit");
    QLLM_CHECK(!m->quantized() || same_stored_format(m->int4->scheme, first->int4->scheme),
               "{} is stored as {} but {} as {}: running a model as stored needs one INT4 format (pass an "
               "explicit --quant)",
               m->name, m->int4->scheme.describe(), first->name, first->int4->scheme.describe());
  }
  return first && first->quantized() ? first : nullptr;
}

}  // namespace

ModelQuant stored_quant(const LlamaWeights& weights) {
  std::vector<const WeightMatrix*> layers;
  for (const LayerWeights& l : weights.layers) {
    for (const WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      layers.push_back(m);
  }
  const WeightMatrix* layer_format = common_format(layers);
  const WeightMatrix* heads[] = {&weights.lm_head, &weights.embed};
  const WeightMatrix* head_format = common_format(heads);
  ModelQuant q = ModelQuant::parse("bf16");
  if (!layer_format && !head_format) return q;
  // The kernels read scales in the activation dtype; both formats must agree on it.
  const DType activation = (layer_format ? layer_format : head_format)->int4->scheme.scale_dtype;
  QLLM_CHECK(!layer_format || !head_format || head_format->int4->scheme.scale_dtype == activation,
             "{} has {} scales but {} {}: one activation dtype runs both (pass an explicit --quant)",
             head_format ? head_format->name : "",
             head_format ? dtype_name(head_format->int4->scheme.scale_dtype) : "",
             layer_format ? layer_format->name : "", dtype_name(activation));
  q.activation = activation;
  q.linear = layer_format ? int4_mode(layer_format->int4->scheme) : QuantMode::parse(dtype_name(activation));
  q.lm_head = head_format ? int4_mode(head_format->int4->scheme) : QuantMode::parse(dtype_name(activation));
  return q;
}

}  // namespace qllm
