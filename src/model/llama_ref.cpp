#include "model/llama_ref.h"

#include <fmt/format.h>

#include <cmath>

#include "kernels/sampling/top_logprobs.h"
#include "model/cpu_ops.h"
#include "qllm/error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace qllm {

// The buffers of one forward pass over T tokens (all sequences of the batch, concatenated).
struct LlamaRefContext::Activations {
  int64_t tokens = 0;             // T
  std::vector<int> slot;          // [T] sequence (cache slot) of each token
  std::vector<int64_t> position;  // [T] position of each token in its sequence
  std::vector<float> x;           // [T, hidden] residual stream
  std::vector<float> xb;          // [T, hidden] normed input of a block / its output before the residual add
  std::vector<float> q;           // [T, heads * head_dim] queries
  std::vector<float> k;           // [T, kv_heads * head_dim] keys of the new tokens
  std::vector<float> v;           // [T, kv_heads * head_dim] values of the new tokens
  std::vector<float> att;         // [T, heads * head_dim] attention output
  std::vector<float> gate;        // [T, intermediate] gate projection, then silu(gate) * up
  std::vector<float> up;          // [T, intermediate] up projection
};

LlamaRefModel::LlamaRefModel(LlamaConfig config, LlamaWeights weights, const ModelQuant& quant)
    : config_(std::move(config)), weights_(std::move(weights)), quant_(quant) {
  const DType act = quant_.activation_dtype();
  for (const LayerWeights& l : weights_.layers) {
    const QuantMode& m = quant_.linear;
    layers_.push_back({CpuLinear(l.wq, m, act), CpuLinear(l.wk, m, act), CpuLinear(l.wv, m, act),
                       CpuLinear(l.wo, m, act), CpuLinear(l.w_gate, m, act), CpuLinear(l.w_up, m, act),
                       CpuLinear(l.w_down, m, act)});
  }
  lm_head_ = CpuLinear(weights_.lm_head, quant_.lm_head, act);
  if (!config_.tie_word_embeddings) embed_ = CpuLinear(weights_.embed, quant_.lm_head, act);
  for (double f : rope_inverse_frequencies(config_)) inv_freq_.push_back(static_cast<float>(f));
}

std::string LlamaRefModel::device_name() const {
#ifdef _OPENMP
  return fmt::format("cpu (reference, {} threads)", omp_get_max_threads());
#else
  return "cpu (reference, 1 thread)";
#endif
}

uint64_t LlamaRefModel::weight_bytes() const {
  uint64_t bytes = lm_head_.stored_bytes() + weights_.final_norm.size() * sizeof(float);
  if (!config_.tie_word_embeddings) bytes += embed_.stored_bytes();
  for (const LayerLinears& l : layers_) {
    for (const CpuLinear* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down})
      bytes += w->stored_bytes();
  }
  return bytes + 2 * layers_.size() * static_cast<uint64_t>(config_.hidden_size) * sizeof(float);
}

void LlamaRefModel::embed(int32_t token, float* out) const {
  (config_.tie_word_embeddings ? lm_head_ : embed_).row_to_f32(token, out);
}

std::unique_ptr<Context> LlamaRefModel::new_context(const ContextOptions& options) const {
  return std::make_unique<LlamaRefContext>(*this, options);
}

LlamaRefContext::LlamaRefContext(const LlamaRefModel& model, const ContextOptions& options)
    : model_(model), config_(model.config()), max_batch_tokens_(options.max_batch_tokens) {
  const int64_t positions =
      options.max_positions > 0 ? options.max_positions : config_.max_position_embeddings;
  QLLM_CHECK(positions <= config_.max_position_embeddings,
             "context of {} positions exceeds the model's max_position_embeddings {}", positions,
             config_.max_position_embeddings);
  QLLM_CHECK(options.max_sequences > 0 && max_batch_tokens_ > 0,
             "context: max_sequences ({}) and max_batch_tokens ({}) must be positive", options.max_sequences,
             max_batch_tokens_);
  cache_ = KvCache(options.max_sequences, config_.num_hidden_layers, positions, config_.kv_dim());
}

int64_t LlamaRefContext::length(int seq) const {
  QLLM_CHECK(seq >= 0 && seq < cache_.slots(), "sequence {} is outside [0, {})", seq, cache_.slots());
  return cache_.length(seq);
}

void LlamaRefContext::truncate(int seq, int64_t length) {
  QLLM_CHECK(seq >= 0 && seq < cache_.slots(), "sequence {} is outside [0, {})", seq, cache_.slots());
  cache_.set_length(seq, std::min(length, cache_.length(seq)));
}

void LlamaRefContext::attention_block(int64_t layer, Activations& a) {
  const LayerWeights& norms = model_.weights().layers[layer];
  const LayerLinears& w = model_.layer(layer);
  const int64_t T = a.tokens;
  const int64_t hidden = config_.hidden_size;
  const int64_t heads = config_.num_attention_heads;
  const int64_t kv_heads = config_.num_key_value_heads;
  const int64_t head_dim = config_.head_dim;
  const int64_t q_dim = config_.q_dim();
  const int64_t kv_dim = config_.kv_dim();

  for (int64_t t = 0; t < T; ++t) {
    cpu::rmsnorm(&a.xb[t * hidden], &a.x[t * hidden], norms.attn_norm.data(), hidden, config_.rms_norm_eps);
  }
  w.wq.forward(a.q.data(), a.xb.data(), T);
  w.wk.forward(a.k.data(), a.xb.data(), T);
  w.wv.forward(a.v.data(), a.xb.data(), T);
  for (int64_t t = 0; t < T; ++t) {
    cpu::rope(&a.q[t * q_dim], heads, head_dim, a.position[t], model_.inv_freq());
    cpu::rope(&a.k[t * kv_dim], kv_heads, head_dim, a.position[t], model_.inv_freq());
    std::copy_n(&a.k[t * kv_dim], kv_dim, cache_.key(a.slot[t], layer, a.position[t]));
    std::copy_n(&a.v[t * kv_dim], kv_dim, cache_.value(a.slot[t], layer, a.position[t]));
  }

  // Causal grouped-query attention: token t at position p sees positions 0..p of its own slot (the new
  // tokens of this batch were written above; later ones are outside the loop bound).
  const int64_t group = heads / kv_heads;  // query heads per KV head
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t work = T * heads * (a.position.back() + 1) * head_dim;  // about the multiply-adds
#pragma omp parallel if (work >= cpu::kParallelWork)
  {
    std::vector<float> scores(static_cast<size_t>(cache_.capacity()));  // [positions] of one (token, head)
#pragma omp for schedule(dynamic, 4)
    for (int64_t th = 0; th < T * heads; ++th) {
      const int64_t t = th / heads;
      const int64_t h = th % heads;
      const int64_t kv_offset = (h / group) * head_dim;
      const float* q = &a.q[t * q_dim + h * head_dim];  // [head_dim]
      const int64_t seen = a.position[t] + 1;
      for (int64_t p = 0; p < seen; ++p) {
        scores[p] = cpu::dot(q, cache_.key(a.slot[t], layer, p) + kv_offset, head_dim) * scale;
      }
      cpu::softmax(scores.data(), seen);
      float* out = &a.att[t * q_dim + h * head_dim];  // [head_dim]
      std::fill_n(out, head_dim, 0.0f);
      for (int64_t p = 0; p < seen; ++p) {
        const float* value = cache_.value(a.slot[t], layer, p) + kv_offset;
        for (int64_t d = 0; d < head_dim; ++d) out[d] += scores[p] * value[d];
      }
    }
  }

  w.wo.forward(a.xb.data(), a.att.data(), T);
  for (int64_t i = 0; i < T * hidden; ++i) a.x[i] += a.xb[i];
}

void LlamaRefContext::mlp_block(int64_t layer, Activations& a) {
  const LayerWeights& norms = model_.weights().layers[layer];
  const LayerLinears& w = model_.layer(layer);
  const int64_t T = a.tokens;
  const int64_t hidden = config_.hidden_size;
  for (int64_t t = 0; t < T; ++t) {
    cpu::rmsnorm(&a.xb[t * hidden], &a.x[t * hidden], norms.ffn_norm.data(), hidden, config_.rms_norm_eps);
  }
  w.gate.forward(a.gate.data(), a.xb.data(), T);
  w.up.forward(a.up.data(), a.xb.data(), T);
  cpu::swiglu(a.gate.data(), a.up.data(), T * config_.intermediate_size);
  w.down.forward(a.xb.data(), a.gate.data(), T);
  for (int64_t i = 0; i < T * hidden; ++i) a.x[i] += a.xb[i];
}

std::vector<float> LlamaRefContext::logits_of(const Activations& a, std::span<const int64_t> rows) const {
  const int64_t hidden = config_.hidden_size;
  std::vector<float> normed(rows.size() * hidden);  // [rows, hidden]
  for (size_t r = 0; r < rows.size(); ++r) {
    cpu::rmsnorm(&normed[r * hidden], &a.x[rows[r] * hidden], model_.weights().final_norm.data(), hidden,
                 config_.rms_norm_eps);
  }
  std::vector<float> logits(rows.size() * config_.vocab_size);  // [rows, vocab]
  model_.lm_head().forward(logits.data(), normed.data(), static_cast<int64_t>(rows.size()));
  return logits;
}

void LlamaRefContext::forward(std::span<const SequenceInput> batch, const ForwardOutputs& outputs) {
  const int64_t T = validate_forward(*this, batch, outputs);
  const int64_t hidden = config_.hidden_size;
  const int64_t vocab = config_.vocab_size;

  Activations a;
  std::vector<int64_t> last_row;  // [sequences] row of each sequence's last token
  for (const SequenceInput& s : batch) {
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      a.slot.push_back(s.seq);
      a.position.push_back(s.start_position + static_cast<int64_t>(i));
    }
    last_row.push_back(static_cast<int64_t>(a.slot.size()) - 1);
  }
  a.tokens = T;
  a.x.resize(T * hidden);
  a.xb.resize(T * hidden);
  a.q.resize(T * config_.q_dim());
  a.k.resize(T * config_.kv_dim());
  a.v.resize(T * config_.kv_dim());
  a.att.resize(T * config_.q_dim());
  a.gate.resize(T * config_.intermediate_size);
  a.up.resize(T * config_.intermediate_size);

  int64_t row = 0;
  for (const SequenceInput& s : batch) {
    for (int32_t token : s.tokens) model_.embed(token, &a.x[row++ * hidden]);
  }
  for (int64_t layer = 0; layer < config_.num_hidden_layers; ++layer) {
    attention_block(layer, a);
    mlp_block(layer, a);
  }
  for (const SequenceInput& s : batch) {
    cache_.set_length(s.seq, s.start_position + static_cast<int64_t>(s.tokens.size()));
  }

  if (!outputs.last_logits.empty() || !outputs.sampled.empty()) {
    std::vector<float> logits = logits_of(a, last_row);
    if (!outputs.last_logits.empty()) std::copy(logits.begin(), logits.end(), outputs.last_logits.begin());
    for (size_t s = 0; s < outputs.sampled.size(); ++s) {
      const TokenSampling& how = outputs.sampling[s];
      const std::span<float> row = std::span<float>(logits).subspan(s * vocab, static_cast<size_t>(vocab));
      // The draw uses the row as scratch space: log-probabilities read a copy of the model's logits.
      const bool logprobs = !outputs.sampled_logprobs.empty() || outputs.top_logprobs > 0;
      const std::vector<float> raw =
          logprobs ? std::vector<float>(row.begin(), row.end()) : std::vector<float>();
      outputs.sampled[s] = sample_token(how.params, how.step, row, how.history);
      if (!outputs.sampled_logprobs.empty()) {
        outputs.sampled_logprobs[s] =
            static_cast<float>(-cpu::negative_log_likelihood(raw.data(), vocab, outputs.sampled[s]));
      }
      if (outputs.top_logprobs > 0) {
        const size_t at = s * static_cast<size_t>(outputs.top_logprobs);
        top_logprobs_of_row(raw, outputs.top_logprobs, &outputs.top_ids[at], &outputs.top_id_logprobs[at]);
      }
    }
  }
  if (outputs.all_logits.empty() && outputs.nll.empty()) return;
  // Every row: in chunks, so that a long batch holds at most kChunk x vocab logits at once.
  constexpr int64_t kChunk = 64;
  for (int64_t first = 0; first < T; first += kChunk) {
    std::vector<int64_t> rows;
    for (int64_t t = first; t < std::min(T, first + kChunk); ++t) {
      if (!outputs.all_logits.empty() || outputs.targets[t] >= 0) rows.push_back(t);
    }
    if (rows.empty()) continue;
    const std::vector<float> logits = logits_of(a, rows);
    for (size_t r = 0; r < rows.size(); ++r) {
      const float* row_logits = logits.data() + r * vocab;
      const int64_t t = rows[r];
      if (!outputs.all_logits.empty()) std::copy_n(row_logits, vocab, outputs.all_logits.begin() + t * vocab);
      if (!outputs.nll.empty()) {
        outputs.nll[t] = outputs.targets[t] >= 0
                             ? cpu::negative_log_likelihood(row_logits, vocab, outputs.targets[t])
                             : 0.0;
      }
    }
  }
}

}  // namespace qllm
