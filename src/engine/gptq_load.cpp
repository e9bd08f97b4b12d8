// apply_gptq (engine/gptq_model.h): calibration windows, the layer-by-layer GPTQ pass, and the results put
// into the host weights, for load_model (--method gptq) and qllm quantize.
#include <fmt/format.h>

#include <chrono>
#include <memory>

#include "core/progress.h"
#include "engine/gptq_model.h"
#include "model/cpu_linear.h"
#include "model/llama_ref.h"
#include "qllm/error.h"

#if QLLM_HAVE_CUDA
#include "kernels/gptq/gptq_cuda.h"
#include "model/llama_cuda.h"
#endif

namespace qllm {

namespace {

// A second LlamaWeights over the same tensors (views: the original owns the storage and outlives it), for a
// sampler model that takes its weights by value.
LlamaWeights weight_views(const LlamaWeights& w) {
  LlamaWeights view;
  view.embed = w.embed;
  view.layers = w.layers;
  view.final_norm = w.final_norm;
  view.lm_head = w.lm_head;
  return view;
}

std::vector<std::vector<int32_t>> windows_for(const LlamaConfig& config, const LlamaWeights& weights,
                                              const Tokenizer& tokenizer, bool cuda,
                                              const CalibrationOptions& calib) {
  const ModelQuant bf16 = ModelQuant::parse("bf16");
  std::unique_ptr<Model> sampler;
#if QLLM_HAVE_CUDA
  if (cuda) sampler = std::make_unique<LlamaCudaModel>(config, weights, bf16, false);
#else
  (void)cuda;
#endif
  if (!sampler) sampler = std::make_unique<LlamaRefModel>(config, weight_views(weights), bf16);
  return calibration_windows(*sampler, tokenizer, calib);
}

void put_layers(LlamaWeights& weights, GptqModelResult& r) {
  for (size_t i = 0; i < r.layers.size(); ++i) {
    LayerWeights& l = weights.layers[i];
    GptqLayer& q = r.layers[i];
    weights.set_int4(l.wq.name, std::move(q.wq));
    weights.set_int4(l.wk.name, std::move(q.wk));
    weights.set_int4(l.wv.name, std::move(q.wv));
    weights.set_int4(l.wo.name, std::move(q.wo));
    weights.set_int4(l.w_gate.name, std::move(q.gate));
    weights.set_int4(l.w_up.name, std::move(q.up));
    weights.set_int4(l.w_down.name, std::move(q.down));
    if (!q.attn_norm.empty()) l.attn_norm = std::move(q.attn_norm);  // AWQ's 1/s folded in
    if (!q.ffn_norm.empty()) l.ffn_norm = std::move(q.ffn_norm);
  }
}

}  // namespace

GptqTimes apply_gptq(const LlamaConfig& config, LlamaWeights& weights, const Tokenizer& tokenizer,
                     const ModelQuant& quant, DType activation, bool cuda, const GptqLoadOptions& options,
                     bool verbose) {
  QLLM_CHECK(quant.linear.kind == QuantMode::Kind::Int4,
             "--method gptq/awq quantizes to INT4: --quant must be an INT4 mode (int4-g128, int4-rowwise, "
             "...), not {}",
             quant.linear.name());
  const auto start = std::chrono::steady_clock::now();
  if (verbose) {
    fmt::print(stderr, "gptq: calibration {} ({} windows x {} tokens)\n", options.calib.source,
               options.calib.samples, options.calib.length);
  }
  const auto windows = windows_for(config, weights, tokenizer, cuda, options.calib);
  const double sampling = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // The embedding rows as the final model reads them (a tied embedding in the lm_head's mode).
  const CpuLinear embedding(config.tie_word_embeddings ? weights.lm_head : weights.embed, quant.lm_head,
                            activation);
  std::unique_ptr<GptqSolver> solver;
  std::unique_ptr<CalibrationMath> math;
#if QLLM_HAVE_CUDA
  if (cuda) {
    solver = std::make_unique<GptqSolverCuda>();
    math = cuda_calibration_math();
  }
#endif
  if (!solver) solver = std::make_unique<GptqSolverRef>();

  GptqModelOptions o;
  o.scheme = quant.linear.int4;
  o.gptq = options.gptq;
  o.awq = options.awq;
  o.solve = options.solve;
  o.clip = options.clip;
  o.activation = activation;
  o.math = math.get();
  o.embed = [&](int32_t token, float* out) { embedding.row_to_f32(token, out); };
  const std::string what = std::string(options.awq ? (options.solve ? "awq-gptq" : "awq") : "gptq") +
                           (options.clip ? " + clip search" : "");
  Progress progress(options.solve ? fmt::format("{} layers ({} solver)", what, solver->name())
                                  : fmt::format("{} layers", what),
                    config.num_hidden_layers, verbose);
  o.progress = [&](int64_t layer, int64_t) { progress.update(layer); };
  GptqModelResult r = gptq_quantize_model(config, weights, windows, *solver, o);
  GptqTimes t = r.times;
  t.sampling = sampling;
  t.total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  progress.finish(
      fmt::format("{} calibration tokens, {:.1f} s (sampling {:.1f}, forward {:.1f}, Hessians "
                  "{:.1f}, solve {:.1f}, AWQ search {:.1f})",
                  r.calibration_tokens, t.total, t.sampling, t.forward, t.hessian, t.solve, t.awq));
  put_layers(weights, r);
  return t;
}

}  // namespace qllm
