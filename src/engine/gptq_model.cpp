#include "engine/gptq_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "model/cpu_ops.h"
#include "model/prequantized.h"
#include "qllm/error.h"
#include "qllm/half.h"

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

class LayerRunner {
 public:
  LayerRunner(const LlamaConfig& config, GptqSolver& solver, const GptqModelOptions& options,
              GptqModelResult& result)
      : config_(config), solver_(solver), options_(options), result_(result) {
    for (double f : rope_inverse_frequencies(config_)) inv_freq_.push_back(static_cast<float>(f));
    scheme_ = options.scheme;
    scheme_.scale_dtype = options.activation;
  }

  void run(int64_t index, const LayerWeights& l, Batch& b);

 private:
  // Hessian of `input` [tokens, cols] factored for the solver; kept for the report.
  void factor(const std::vector<float>& input, int64_t cols);
  Quantized quantize(const WeightMatrix& w, const std::string& name);
  void matmul(std::vector<float>& out, const std::vector<float>& x, int64_t tokens, const Quantized& q) const;
  void attention(const Batch& b, std::vector<float>& q, std::vector<float>& k, const std::vector<float>& v,
                 std::vector<float>& out) const;

  const LlamaConfig& config_;
  GptqSolver& solver_;
  const GptqModelOptions& options_;
  GptqModelResult& result_;
  Int4Scheme scheme_;
  std::vector<float> inv_freq_;
  std::vector<float> hessian_;  // of the last factor()
};

void LayerRunner::factor(const std::vector<float>& input, int64_t cols) {
  HessianAccumulator acc(cols);
  acc.add(input.data(), static_cast<int64_t>(input.size()) / cols);
  hessian_ = acc.hessian();
  solver_.factor(hessian_, cols, options_.gptq);
}

Quantized LayerRunner::quantize(const WeightMatrix& w, const std::string& name) {
  const std::vector<float> source = quantizer_source(w, options_.activation);
  Quantized q;
  q.matrix = solver_.quantize(source, w.rows, w.cols, scheme_);
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
  out.resize(static_cast<size_t>(tokens * q.matrix.rows));
  const WeightMatrix view{.name = "gptq",
                          .dtype = DType::F32,
                          .data = q.values.data(),
                          .rows = q.matrix.rows,
                          .cols = q.matrix.cols};
  cpu::matmul(out.data(), x.data(), tokens, view);
}

// Causal grouped-query attention within each window (positions restart at 0 in every window), as the
// reference engine computes it.
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
  out.assign(static_cast<size_t>(b.tokens * q_dim), 0.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<int64_t> window_of(static_cast<size_t>(b.tokens));
  for (int64_t w = 0; w < windows; ++w) {
    for (int64_t t = b.window_start[w]; t < b.window_start[w + 1]; ++t) window_of[t] = b.window_start[w];
  }
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(b.tokens));
#pragma omp for schedule(dynamic, 8)
    for (int64_t th = 0; th < b.tokens * heads; ++th) {
      const int64_t t = th / heads, h = th % heads, first = window_of[t];
      const int64_t kv_off = (h / (heads / kv_heads)) * hd;
      const float* qv = &q[t * q_dim + h * hd];
      for (int64_t p = first; p <= t; ++p)
        scores[p - first] = cpu::dot(qv, &k[p * kv_dim + kv_off], hd) * scale;
      cpu::softmax(scores.data(), t - first + 1);
      float* o = &out[t * q_dim + h * hd];
      for (int64_t p = first; p <= t; ++p) {
        for (int64_t d = 0; d < hd; ++d) o[d] += scores[p - first] * v[p * kv_dim + kv_off + d];
      }
    }
  }
}

void LayerRunner::run(int64_t index, const LayerWeights& l, Batch& b) {
  const int64_t T = b.tokens, hidden = config_.hidden_size;
  const std::string prefix = "layers." + std::to_string(index) + ".";
  GptqLayer out;
  std::vector<float> xb(static_cast<size_t>(T * hidden)), q, k, v, att, proj;
  for (int64_t t = 0; t < T; ++t) {
    cpu::rmsnorm(&xb[t * hidden], &b.x[t * hidden], l.attn_norm.data(), hidden, config_.rms_norm_eps);
  }
  factor(xb, hidden);
  Quantized wq = quantize(l.wq, prefix + "self_attn.q_proj");
  Quantized wk = quantize(l.wk, prefix + "self_attn.k_proj");
  Quantized wv = quantize(l.wv, prefix + "self_attn.v_proj");
  matmul(q, xb, T, wq);
  matmul(k, xb, T, wk);
  matmul(v, xb, T, wv);
  attention(b, q, k, v, att);
  factor(att, config_.q_dim());
  Quantized wo = quantize(l.wo, prefix + "self_attn.o_proj");
  matmul(proj, att, T, wo);
  for (int64_t i = 0; i < T * hidden; ++i) b.x[i] += proj[i];

  for (int64_t t = 0; t < T; ++t) {
    cpu::rmsnorm(&xb[t * hidden], &b.x[t * hidden], l.ffn_norm.data(), hidden, config_.rms_norm_eps);
  }
  factor(xb, hidden);
  Quantized gate = quantize(l.w_gate, prefix + "mlp.gate_proj");
  Quantized up = quantize(l.w_up, prefix + "mlp.up_proj");
  std::vector<float> g, u;
  matmul(g, xb, T, gate);
  matmul(u, xb, T, up);
  cpu::swiglu(g.data(), u.data(), T * config_.intermediate_size);
  factor(g, config_.intermediate_size);
  Quantized down = quantize(l.w_down, prefix + "mlp.down_proj");
  matmul(proj, g, T, down);
  for (int64_t i = 0; i < T * hidden; ++i) b.x[i] += proj[i];

  result_.layers.push_back({std::move(wq.matrix), std::move(wk.matrix), std::move(wv.matrix),
                            std::move(wo.matrix), std::move(gate.matrix), std::move(up.matrix),
                            std::move(down.matrix)});
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
  LayerRunner runner(config, solver, options, result);
  auto layers = static_cast<int64_t>(weights.layers.size());
  if (options.max_layers >= 0) layers = std::min(layers, options.max_layers);
  for (int64_t i = 0; i < layers; ++i) {
    runner.run(i, weights.layers[i], b);
    if (options.progress) options.progress(i + 1, layers);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace qllm
