#include "engine/gptq_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <initializer_list>
#include <memory>

#include "model/cpu_ops.h"
#include "model/prequantized.h"
#include "qllm/error.h"
#include "qllm/half.h"
#include "quant/awq_ref.h"
#include "quant/clip_search_ref.h"

namespace qllm {

namespace {

// The calibration activations of every window, concatenated: [tokens, width] row-major.
struct Batch {
  int64_t tokens = 0;
  std::vector<int64_t> window_start;  // [windows + 1] first row of each window
  std::vector<float> x;               // residual stream [tokens, hidden]
};

// One quantized linear: the matrix and its dequantized values (what the engines compute with).
struct Quantized {
  Int4Matrix matrix;
  std::vector<float> values;
};

// A layer as the quantizer reads it: the weights as float (quantizer_source) and the norms, which AWQ scaling
// rewrites.
struct LayerSources {
  std::vector<float> attn_norm, ffn_norm;
  std::vector<float> wq, wk, wv, wo, gate, up, down;
};

constexpr int kAwqGrid = 20;  // exponents 0, 0.05, ..., 0.95 (docs/GPTQ.md)

// Adds the seconds its scope took to `total` (GptqTimes).
class ScopedSeconds {
 public:
  explicit ScopedSeconds(double& total) : total_(total), start_(std::chrono::steady_clock::now()) {}
  ~ScopedSeconds() {
    total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  ScopedSeconds(const ScopedSeconds&) = delete;
  ScopedSeconds& operator=(const ScopedSeconds&) = delete;

 private:
  double& total_;
  std::chrono::steady_clock::time_point start_;
};

class LayerRunner {
 public:
  LayerRunner(const LlamaConfig& config, GptqSolver& solver, CalibrationMath& math,
              const GptqModelOptions& options, GptqModelResult& result)
      : config_(config), solver_(solver), math_(math), options_(options), result_(result) {
    for (double f : rope_inverse_frequencies(config_)) inv_freq_.push_back(static_cast<float>(f));
    scheme_ = options.scheme;
    scheme_.scale_dtype = options.activation;
  }

  void run(int64_t index, const LayerWeights& l, Batch& b);

 private:
  // Hessian of `input` [tokens, cols] factored for the solver; kept for the report.
  void factor(const std::vector<float>& input, int64_t cols);
  Quantized quantize(const std::vector<float>& source, const WeightMatrix& w, const std::string& name);
  // AWQ: searches the three input scalings of the layer on its unquantized outputs and folds them into `s`.
  void scale_layer(LayerSources& s, const LayerWeights& l, const Batch& b) const;
  std::vector<float> search_scales(const std::vector<float>& input, int64_t dim,
                                   std::initializer_list<AwqWeight> weights) const;
  void matmul(std::vector<float>& out, const std::vector<float>& x, int64_t tokens, const Quantized& q) const;
  void norm_rows(std::vector<float>& out, const std::vector<float>& x,
                 const std::vector<float>& weight) const;
  void attention(const Batch& b, std::vector<float>& q, std::vector<float>& k, const std::vector<float>& v,
                 std::vector<float>& out) const;

  const LlamaConfig& config_;
  GptqSolver& solver_;
  CalibrationMath& math_;
  const GptqModelOptions& options_;
  GptqModelResult& result_;
  Int4Scheme scheme_;
  std::vector<float> inv_freq_;
  std::vector<float> hessian_;  // of the last factor()
};

void LayerRunner::factor(const std::vector<float>& input, int64_t cols) {
  // Round to nearest with the scheme's clipping, nothing to report: no Hessian needed.
  if (!options_.solve && !options_.report && !options_.clip) return;
  const ScopedSeconds timer(result_.times.hessian);
  hessian_ = math_.hessian(input, cols);
  if (options_.solve) solver_.factor(hessian_, cols, options_.gptq);
}

Quantized LayerRunner::quantize(const std::vector<float>& source, const WeightMatrix& w,
                                const std::string& name) {
  const ScopedSeconds timer(result_.times.solve);
  Quantized q;
  std::vector<int4::GroupParams> groups;
  if (options_.clip) groups = clip_search_ref(source, w.rows, w.cols, hessian_, scheme_);
  if (options_.solve) {
    q.matrix = solver_.quantize(source, w.rows, w.cols, scheme_, groups);
  } else {
    q.matrix = options_.clip ? quantize_int4_with_params(source, w.rows, w.cols, scheme_, groups)
                             : quantize_int4_ref(source, w.rows, w.cols, scheme_);
  }
  q.values = dequantize_int4_ref(q.matrix);
  if (options_.report) {
    const std::vector<float> rtn = dequantize_int4_ref(quantize_int4_ref(source, w.rows, w.cols, scheme_));
    GptqLinearReport r{.name = name, .rows = w.rows, .cols = w.cols};
    r.rtn_mae = measure_error(source, rtn).mae;
    r.gptq_mae = measure_error(source, q.values).mae;
    r.rtn_output_error = gptq_output_error(source, rtn, w.rows, w.cols, hessian_);
    r.gptq_output_error = gptq_output_error(source, q.values, w.rows, w.cols, hessian_);
    result_.report.push_back(std::move(r));
  }
  return q;
}

void LayerRunner::matmul(std::vector<float>& out, const std::vector<float>& x, int64_t tokens,
                         const Quantized& q) const {
  math_.matmul(out, x, tokens, q.values, q.matrix.rows, q.matrix.cols);
}

void LayerRunner::norm_rows(std::vector<float>& out, const std::vector<float>& x,
                            const std::vector<float>& weight) const {
  const int64_t hidden = config_.hidden_size, tokens = static_cast<int64_t>(x.size()) / hidden;
  out.resize(x.size());
  for (int64_t t = 0; t < tokens; ++t) {
    cpu::rmsnorm(&out[t * hidden], &x[t * hidden], weight.data(), hidden, config_.rms_norm_eps);
  }
}

std::vector<float> LayerRunner::search_scales(const std::vector<float>& input, int64_t dim,
                                              std::initializer_list<AwqWeight> weights) const {
  const int64_t tokens = static_cast<int64_t>(input.size()) / dim;
  std::vector<double> sum(static_cast<size_t>(dim), 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t k = 0; k < dim; ++k) sum[k] += std::fabs(input[t * dim + k]);
  }
  std::vector<float> mean_abs(static_cast<size_t>(dim));
  for (int64_t k = 0; k < dim; ++k) mean_abs[k] = static_cast<float>(sum[k] / static_cast<double>(tokens));
  const std::vector<AwqWeight> list(weights);
  const OutputErrorFn on_math = [this](std::span<const float> w, std::span<const float> w_hat, int64_t rows,
                                       int64_t cols, std::span<const float> h) {
    return math_.output_error(w, w_hat, rows, cols, h);
  };
  return awq_search_ref(mean_abs, math_.hessian(input, dim), dim, list, scheme_, kAwqGrid, on_math).scales;
}

// Scaling leaves the layer's outputs unchanged, so the three searches all see the unquantized layer's inputs.
void LayerRunner::scale_layer(LayerSources& s, const LayerWeights& l, const Batch& b) const {
  const int64_t T = b.tokens, hidden = config_.hidden_size, inter = config_.intermediate_size;
  std::vector<float> xb, q, k, v, att, proj, g, u;
  norm_rows(xb, b.x, s.attn_norm);
  const std::vector<float> s_qkv =
      search_scales(xb, hidden, {{s.wq, l.wq.rows}, {s.wk, l.wk.rows}, {s.wv, l.wv.rows}});
  math_.matmul(q, xb, T, s.wq, l.wq.rows, hidden);
  math_.matmul(k, xb, T, s.wk, l.wk.rows, hidden);
  math_.matmul(v, xb, T, s.wv, l.wv.rows, hidden);
  attention(b, q, k, v, att);
  math_.matmul(proj, att, T, s.wo, l.wo.rows, l.wo.cols);
  std::vector<float> x = b.x;
  for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
  norm_rows(xb, x, s.ffn_norm);
  const std::vector<float> s_gate_up = search_scales(xb, hidden, {{s.gate, inter}, {s.up, inter}});
  math_.matmul(g, xb, T, s.gate, inter, hidden);
  math_.matmul(u, xb, T, s.up, inter, hidden);
  cpu::swiglu(g.data(), u.data(), T * inter);
  const std::vector<float> s_down = search_scales(g, inter, {{s.down, hidden}});

  // Fold: a norm's weight (or up_proj's row) divided by s_k, the columns reading that input multiplied.
  auto scale_columns = [](std::vector<float>& w, const std::vector<float>& scale) {
    const auto cols = static_cast<int64_t>(scale.size());
    for (size_t i = 0; i < w.size(); ++i) w[i] *= scale[static_cast<int64_t>(i) % cols];
  };
  for (int64_t i = 0; i < hidden; ++i) s.attn_norm[i] /= s_qkv[i];
  for (auto* w : {&s.wq, &s.wk, &s.wv}) scale_columns(*w, s_qkv);
  for (int64_t i = 0; i < hidden; ++i) s.ffn_norm[i] /= s_gate_up[i];
  for (auto* w : {&s.gate, &s.up}) scale_columns(*w, s_gate_up);
  for (int64_t r = 0; r < inter; ++r) {
    for (int64_t c = 0; c < hidden; ++c) s.up[r * hidden + c] /= s_down[r];
  }
  scale_columns(s.down, s_down);
}

// RoPE at each window's positions (restarting at 0), then causal grouped-query attention within each window
// (CalibrationMath::attention).
void LayerRunner::attention(const Batch& b, std::vector<float>& q, std::vector<float>& k,
                            const std::vector<float>& v, std::vector<float>& out) const {
  const int64_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
  const int64_t hd = config_.head_dim, q_dim = config_.q_dim(), kv_dim = config_.kv_dim();
  const int64_t windows = static_cast<int64_t>(b.window_start.size()) - 1;
  for (int64_t w = 0; w < windows; ++w) {
    for (int64_t t = b.window_start[w]; t < b.window_start[w + 1]; ++t) {
      cpu::rope(&q[t * q_dim], heads, hd, t - b.window_start[w], inv_freq_);
      cpu::rope(&k[t * kv_dim], kv_heads, hd, t - b.window_start[w], inv_freq_);
    }
  }
  math_.attention(out, q, k, v, b.window_start, heads, kv_heads, hd);
}

void LayerRunner::run(int64_t index, const LayerWeights& l, Batch& b) {
  const int64_t T = b.tokens, hidden = config_.hidden_size;
  const std::string prefix = "layers." + std::to_string(index) + ".";
  const DType act = options_.activation;
  LayerSources s{l.attn_norm,
                 l.ffn_norm,
                 quantizer_source(l.wq, act),
                 quantizer_source(l.wk, act),
                 quantizer_source(l.wv, act),
                 quantizer_source(l.wo, act),
                 quantizer_source(l.w_gate, act),
                 quantizer_source(l.w_up, act),
                 quantizer_source(l.w_down, act)};
  if (options_.awq) {
    const ScopedSeconds timer(result_.times.awq);
    scale_layer(s, l, b);
  }

  std::vector<float> xb, q, k, v, att, proj;
  norm_rows(xb, b.x, s.attn_norm);
  factor(xb, hidden);
  Quantized wq = quantize(s.wq, l.wq, prefix + "self_attn.q_proj");
  Quantized wk = quantize(s.wk, l.wk, prefix + "self_attn.k_proj");
  Quantized wv = quantize(s.wv, l.wv, prefix + "self_attn.v_proj");
  matmul(q, xb, T, wq);
  matmul(k, xb, T, wk);
  matmul(v, xb, T, wv);
  attention(b, q, k, v, att);
  factor(att, config_.q_dim());
  Quantized wo = quantize(s.wo, l.wo, prefix + "self_attn.o_proj");
  matmul(proj, att, T, wo);
  for (int64_t i = 0; i < T * hidden; ++i) b.x[i] += proj[i];

  norm_rows(xb, b.x, s.ffn_norm);
  factor(xb, hidden);
  Quantized gate = quantize(s.gate, l.w_gate, prefix + "mlp.gate_proj");
  Quantized up = quantize(s.up, l.w_up, prefix + "mlp.up_proj");
  std::vector<float> g, u;
  matmul(g, xb, T, gate);
  matmul(u, xb, T, up);
  cpu::swiglu(g.data(), u.data(), T * config_.intermediate_size);
  factor(g, config_.intermediate_size);
  Quantized down = quantize(s.down, l.w_down, prefix + "mlp.down_proj");
  matmul(proj, g, T, down);
  for (int64_t i = 0; i < T * hidden; ++i) b.x[i] += proj[i];

  GptqLayer out{std::move(wq.matrix),   std::move(wk.matrix), std::move(wv.matrix),  std::move(wo.matrix),
                std::move(gate.matrix), std::move(up.matrix), std::move(down.matrix)};
  if (options_.awq) {
    out.attn_norm = std::move(s.attn_norm);
    out.ffn_norm = std::move(s.ffn_norm);
  }
  result_.layers.push_back(std::move(out));
}

}  // namespace

GptqModelResult gptq_quantize_model(const LlamaConfig& config, const LlamaWeights& weights,
                                    std::span<const std::vector<int32_t>> windows, GptqSolver& solver,
                                    const GptqModelOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  QLLM_CHECK(!windows.empty(), "GPTQ: no calibration windows");
  const int64_t hidden = config.hidden_size;
  Batch b;
  b.window_start.push_back(0);
  for (const auto& w : windows) {
    QLLM_CHECK(!w.empty(), "GPTQ: an empty calibration window");
    b.window_start.push_back(b.window_start.back() + static_cast<int64_t>(w.size()));
  }
  b.tokens = b.window_start.back();
  b.x.resize(static_cast<size_t>(b.tokens * hidden));
  std::vector<float> row(static_cast<size_t>(hidden));
  int64_t t = 0;
  for (const auto& w : windows) {
    for (int32_t token : w) {
      QLLM_CHECK(token >= 0 && token < config.vocab_size, "GPTQ: calibration token {} outside the vocabulary",
                 token);
      if (options.embed) {
        options.embed(token, &b.x[t * hidden]);
      } else {
        weights.embed.row_to_f32(token, &b.x[t * hidden]);
        for (int64_t i = 0; i < hidden; ++i) {
          float& x = b.x[t * hidden + i];
          x = options.activation == DType::BF16 ? to_float(to_bf16(x)) : to_float(to_half(x));
        }
      }
      ++t;
    }
  }

  GptqModelResult result;
  result.calibration_tokens = b.tokens;
  std::unique_ptr<CalibrationMath> cpu_math;
  CalibrationMath* math = options.math;
  if (!math) math = (cpu_math = cpu_calibration_math()).get();
  LayerRunner runner(config, solver, *math, options, result);
  auto layers = static_cast<int64_t>(weights.layers.size());
  if (options.max_layers >= 0) layers = std::min(layers, options.max_layers);
  double layer_seconds = 0;
  for (int64_t i = 0; i < layers; ++i) {
    {
      const ScopedSeconds timer(layer_seconds);
      runner.run(i, weights.layers[i], b);
    }
    if (options.progress) options.progress(i + 1, layers);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  GptqTimes& times = result.times;
  times.forward = std::max(0.0, layer_seconds - times.hessian - times.solve - times.awq);
  times.total = result.seconds;
  return result;
}

}  // namespace qllm
