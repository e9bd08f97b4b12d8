#include "model/llama_ref.h"

#include <fmt/format.h>

#include <cmath>
#include <set>

#include "model/cpu_ops.h"
#include "qllm/error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace qllm {

// The buffers of one forward pass over T tokens (all sequences of the batch, concatenated).
struct LlamaRef::Activations {
  int64_t tokens = 0;             // T
  std::vector<int> slot;          // [T] cache slot of each token
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

LlamaRef::LlamaRef(LlamaConfig config, LlamaWeights weights)
    : config_(std::move(config)), weights_(std::move(weights)) {
  for (double f : rope_inverse_frequencies(config_)) inv_freq_.push_back(static_cast<float>(f));
}

std::unique_ptr<LlamaRef> LlamaRef::load(const std::string& dir, bool verbose) {
  LlamaConfig config = LlamaConfig::load(dir);
  LlamaWeights weights = LlamaWeights::load(dir, config, verbose);
  return std::make_unique<LlamaRef>(std::move(config), std::move(weights));
}

std::string LlamaRef::device_name() const {
#ifdef _OPENMP
  return fmt::format("cpu (reference, {} threads)", omp_get_max_threads());
#else
  return "cpu (reference, 1 thread)";
#endif
}

void LlamaRef::allocate_cache(int slots, int64_t capacity) {
  QLLM_CHECK(capacity <= config_.max_position_embeddings,
             "KV cache capacity {} exceeds max_position_embeddings {}", capacity,
             config_.max_position_embeddings);
  cache_ = KvCache(slots, config_.num_hidden_layers, capacity, config_.kv_dim());
}

void LlamaRef::validate_batch(std::span<const SequenceInput> batch) const {
  QLLM_CHECK(!batch.empty(), "forward: empty batch");
  QLLM_CHECK(cache_.slots() > 0, "forward: no KV cache allocated (call allocate_cache first)");
  std::set<int> slots_seen;
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceInput& s = batch[i];
    QLLM_CHECK(!s.tokens.empty(), "forward: sequence {} has no tokens", i);
    QLLM_CHECK(s.slot >= 0 && s.slot < cache_.slots(),
               "forward: sequence {} uses cache slot {}, outside [0, {})", i, s.slot, cache_.slots());
    QLLM_CHECK(slots_seen.insert(s.slot).second, "forward: cache slot {} appears twice in one batch", s.slot);
    QLLM_CHECK(s.start_position >= 0 && s.start_position <= cache_.length(s.slot),
               "forward: sequence {} starts at position {}, but its cache slot holds only {} positions", i,
               s.start_position, cache_.length(s.slot));
    const int64_t end = s.start_position + static_cast<int64_t>(s.tokens.size());
    QLLM_CHECK(end <= config_.max_position_embeddings,
               "context overflow: sequence {} would reach {} positions, beyond max_position_embeddings {}", i,
               end, config_.max_position_embeddings);
    QLLM_CHECK(end <= cache_.capacity(),
               "context overflow: sequence {} would reach {} positions, beyond the KV cache capacity {}", i,
               end, cache_.capacity());
    for (int32_t token : s.tokens) {
      QLLM_CHECK(token >= 0 && token < config_.vocab_size,
                 "forward: token id {} outside the vocabulary [0, {})", token, config_.vocab_size);
    }
  }
}

void LlamaRef::attention_block(int64_t layer, Activations& a) {
  const LayerWeights& w = weights_.layers[layer];
  const int64_t T = a.tokens;
  const int64_t hidden = config_.hidden_size;
  const int64_t heads = config_.num_attention_heads;
  const int64_t kv_heads = config_.num_key_value_heads;
  const int64_t head_dim = config_.head_dim;
  const int64_t q_dim = config_.q_dim();
  const int64_t kv_dim = config_.kv_dim();

  for (int64_t t = 0; t < T; ++t) {
    cpu::rmsnorm(&a.xb[t * hidden], &a.x[t * hidden], w.attn_norm.data(), hidden, config_.rms_norm_eps);
  }
  cpu::matmul(a.q.data(), a.xb.data(), T, w.wq);
  cpu::matmul(a.k.data(), a.xb.data(), T, w.wk);
  cpu::matmul(a.v.data(), a.xb.data(), T, w.wv);
  for (int64_t t = 0; t < T; ++t) {
    cpu::rope(&a.q[t * q_dim], heads, head_dim, a.position[t], inv_freq_);
    cpu::rope(&a.k[t * kv_dim], kv_heads, head_dim, a.position[t], inv_freq_);
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

  cpu::matmul(a.xb.data(), a.att.data(), T, w.wo);
  for (int64_t i = 0; i < T * hidden; ++i) a.x[i] += a.xb[i];
}

void LlamaRef::mlp_block(int64_t layer, Activations& a) {
  const LayerWeights& w = weights_.layers[layer];
  const int64_t T = a.tokens;
  const int64_t hidden = config_.hidden_size;
  for (int64_t t = 0; t < T; ++t) {
    cpu::rmsnorm(&a.xb[t * hidden], &a.x[t * hidden], w.ffn_norm.data(), hidden, config_.rms_norm_eps);
  }
  cpu::matmul(a.gate.data(), a.xb.data(), T, w.w_gate);
  cpu::matmul(a.up.data(), a.xb.data(), T, w.w_up);
  cpu::swiglu(a.gate.data(), a.up.data(), T * config_.intermediate_size);
  cpu::matmul(a.xb.data(), a.gate.data(), T, w.w_down);
  for (int64_t i = 0; i < T * hidden; ++i) a.x[i] += a.xb[i];
}

std::vector<float> LlamaRef::forward(std::span<const SequenceInput> batch, bool last_only) {
  validate_batch(batch);
  const int64_t hidden = config_.hidden_size;

  Activations a;
  std::vector<int64_t> last_row;  // [sequences] row of each sequence's last token
  for (const SequenceInput& s : batch) {
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      a.slot.push_back(s.slot);
      a.position.push_back(s.start_position + static_cast<int64_t>(i));
    }
    last_row.push_back(static_cast<int64_t>(a.slot.size()) - 1);
  }
  const int64_t T = a.tokens = static_cast<int64_t>(a.slot.size());
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
    for (int32_t token : s.tokens) weights_.embed.row_to_f32(token, &a.x[row++ * hidden]);
  }
  for (int64_t layer = 0; layer < config_.num_hidden_layers; ++layer) {
    attention_block(layer, a);
    mlp_block(layer, a);
  }
  for (const SequenceInput& s : batch) {
    cache_.set_length(s.slot, s.start_position + static_cast<int64_t>(s.tokens.size()));
  }

  // Final norm and lm_head on the rows asked for: [rows, hidden] -> [rows, vocab].
  std::vector<int64_t> rows;
  if (last_only) {
    rows = last_row;
  } else {
    for (int64_t t = 0; t < T; ++t) rows.push_back(t);
  }
  std::vector<float> normed(rows.size() * hidden);  // [rows, hidden]
  for (size_t r = 0; r < rows.size(); ++r) {
    cpu::rmsnorm(&normed[r * hidden], &a.x[rows[r] * hidden], weights_.final_norm.data(), hidden,
                 config_.rms_norm_eps);
  }
  std::vector<float> logits(rows.size() * config_.vocab_size);  // [rows, vocab]
  cpu::matmul(logits.data(), normed.data(), static_cast<int64_t>(rows.size()), weights_.lm_head);
  return logits;
}

}  // namespace qllm
