// Pre-quantized weights in the host model (WeightMatrix::int4): how the engines treat them, and the one
// function that quantizes a host weight the way both engines do at load, so that a model quantized ahead of
// time (`qllm quantize`, a GPTQ or AWQ checkpoint) and one quantized at load compute with the same bits.
//
// Rule (both engines, per weight): a pre-quantized weight is used as stored when the layer's mode is INT4 in
// the same stored format (granularity, group size, zero point) with scales in the activation dtype; under any
// other mode its exact reconstruction is the source that the mode quantizes (or rounds, for bf16/f16).
#pragma once

#include "model/llama_weights.h"
#include "quant/quant_mode.h"

namespace qllm {

// The weight's values as the quantizers read them: 16-bit sources as they are, f32 sources (and the
// reconstruction of a pre-quantized weight) rounded to `activation` first. [rows * cols], row-major.
std::vector<float> quantizer_source(const WeightMatrix& w, DType activation);

// INT4 of `w` as the engines quantize it at load: `scheme` with scales in `activation`, CPU reference
// quantizer (bit-identical to the CUDA one) on quantizer_source().
Int4Matrix quantize_weight_int4(const WeightMatrix& w, const Int4Scheme& scheme, DType activation);

// Whether the engines use `w`'s stored INT4 as it is under `mode` (the rule above).
bool keeps_stored_int4(const WeightMatrix& w, const QuantMode& mode, DType activation);

// The modes that run `weights` as stored ("--quant auto"): a 16-bit model bf16; a pre-quantized one its INT4
// format, the lm_head likewise (or dense in the activation dtype when it is 16-bit), activations in the
// scales' dtype. Every pre-quantized layer weight must share one format, and the lm_head and an untied
// embedding one storage (else qllm::Error naming the two weights: pass an explicit --quant).
ModelQuant stored_quant(const LlamaWeights& weights);

}  // namespace qllm
