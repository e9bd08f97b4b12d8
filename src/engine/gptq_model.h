// GPTQ over a whole Llama model, layer by layer ("true sequential", docs/GPTQ.md): the calibration windows
// run through the model as quantized so far; each linear layer's inputs give its Hessian, the layer is
// quantized, and its quantized output feeds what follows (q/k/v, then o, then gate/up, then down, then the
// next layer). The forward math is the CPU reference engine's (model/cpu_ops.h), its matmuls and Hessians
// optionally on the GPU (engine/calibration_math.h), on the same weights the engines use (f32 sources
// rounded to the activation dtype, scales in the activation dtype).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "engine/calibration.h"
#include "engine/calibration_math.h"
#include "model/llama_config.h"
#include "model/llama_weights.h"
#include "qllm/tokenizer.h"
#include "quant/gptq_ref.h"
#include "quant/quant_mode.h"

namespace qllm {

// The seven quantized matrices of one decoder layer.
struct GptqLayer {
  Int4Matrix wq, wk, wv, wo, gate, up, down;
  // With AWQ scaling: the RMSNorm weights with 1/s folded in (the model must use these); else empty.
  std::vector<float> attn_norm, ffn_norm;
};

// One linear layer's errors on its own calibration inputs, round to nearest beside GPTQ.
struct GptqLinearReport {
  std::string name;  // "layers.3.mlp.down_proj"
  int64_t rows = 0, cols = 0;
  double rtn_mae = 0, gptq_mae = 0;                    // mean |W - W'|
  double rtn_output_error = 0, gptq_output_error = 0;  // ||X (W - W')^T|| / ||X W^T|| (gptq_output_error)
};

struct GptqModelOptions {
  Int4Scheme scheme;  // scale_dtype is replaced by `activation`
  GptqOptions gptq;
  DType activation = DType::BF16;
  int64_t max_layers = -1;  // quantize only the first this many layers (-1: all): quick error tables
  bool report = false;      // also quantize by round to nearest and measure both (GptqLinearReport)
  // AWQ-style input-channel scales (quant/awq_ref.h) searched per layer on the calibration inputs and folded
  // into the norms (q/k/v, gate/up) and up_proj's rows (down_proj) before quantizing.
  bool awq = false;
  bool solve = true;  // false: round to nearest instead of the GPTQ solver (AWQ alone)
  // Each group's clipping chosen by its output error on the calibration inputs (quant/clip_search_ref.h)
  // instead of by the scheme's own rule; GPTQ then keeps those groups static.
  bool clip = false;
  // Where the pass's products (matmuls, Hessians) run (engine/calibration_math.h); null: the CPU reference.
  CalibrationMath* math = nullptr;
  std::function<void(int64_t layer, int64_t layers)> progress;  // after each layer
  // Row `token` of the embedding as the final model stores it (a tied embedding in the lm_head's mode);
  // unset: the embedding matrix rounded to `activation`.
  std::function<void(int32_t token, float* out)> embed;
};

// Where a calibrated pass spends its time (seconds): what to speed up is read from here.
struct GptqTimes {
  double sampling = 0;  // --calib self: the model writing its calibration text (apply_gptq)
  double forward = 0;   // the calibration windows through each layer (norms, products, attention, SwiGLU)
  double hessian = 0;   // the layers' input Hessians and the solver's factorisation of them
  double solve = 0;     // quantizing the weights (GPTQ's column loop, or round to nearest)
  double awq = 0;       // AWQ's scale search (its own forward and Hessians included)
  double total = 0;     // all of the above and the rest (embedding the windows, folding)
};

struct GptqModelResult {
  std::vector<GptqLayer> layers;
  std::vector<GptqLinearReport> report;  // with options.report: seven rows per layer
  int64_t calibration_tokens = 0;
  double seconds = 0;  // the whole pass, calibration forward included
  GptqTimes times;     // its breakdown (sampling is apply_gptq's to fill)
};

// GPTQ of every decoder-layer linear of `weights` (not the lm_head / embedding) with `solver`, calibrated
// on `windows` (each a sequence starting at position 0).
GptqModelResult gptq_quantize_model(const LlamaConfig& config, const LlamaWeights& weights,
                                    std::span<const std::vector<int32_t>> windows, GptqSolver& solver,
                                    const GptqModelOptions& options);

}  // namespace qllm

namespace qllm {

// GPTQ at load time (`--method gptq`) or in `qllm quantize`: calibration and solver settings.
struct GptqLoadOptions {
  CalibrationOptions calib;
  GptqOptions gptq;
  bool awq = false;   // AWQ-style scaling first (GptqModelOptions::awq)
  bool solve = true;  // GPTQ (true) or round to nearest (AWQ alone)
  bool clip = false;  // output-aware clipping (GptqModelOptions::clip)
};

// Replaces every decoder-layer linear weight of `weights` by its GPTQ quantization in `quant.linear`'s INT4
// scheme with scales in `activation` (set_int4: the engines then use it as stored). The windows are sampled
// by (`--calib self`) a bf16 model of these weights on the GPU when `cuda`, else the CPU reference; the solver
// runs there too. The lm_head (and a tied embedding) is left to `quant.lm_head`. Progress per layer on stderr
// when `verbose`. Returns where the pass's time went (calibration sampling included).
GptqTimes apply_gptq(const LlamaConfig& config, LlamaWeights& weights, const Tokenizer& tokenizer,
                     const ModelQuant& quant, DType activation, bool cuda, const GptqLoadOptions& options,
                     bool verbose);

}  // namespace qllm
