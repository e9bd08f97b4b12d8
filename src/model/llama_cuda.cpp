#include "model/llama_cuda.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "core/progress.h"
#include "kernels/attention/attention_layout.h"
#include "kernels/elementwise/embedding.h"
#include "kernels/elementwise/swiglu.h"
#include "kernels/gemm/x_prologue.h"
#include "kernels/norm/rmsnorm.h"
#include "kernels/runtime/device_info.h"
#include "kernels/sampling/sampling.h"
#include "kernels/sampling/token_logprobs.h"
#include "kernels/sampling/top_logprobs.h"
#include "model/prequantized.h"
#include "qllm/error.h"
#include "qllm/half.h"

namespace qllm {

namespace {

// The dtype a fused weight is staged in: its parts' own 16-bit dtype when they share one (taken as they are,
// as the CPU reference quantizes them: model/prequantized.h), else (f32, mixed, or the reconstruction of
// pre-quantized weights) the activation dtype.
DType staging_dtype(std::initializer_list<const WeightMatrix*> parts, DType activation) {
  const DType first = (*parts.begin())->dtype;
  for (const WeightMatrix* w : parts) {
    if (w->dtype != first) return activation;
  }
  return first == DType::F32 ? activation : first;
}

// Host rows of weight matrices concatenated (a fused projection) in `dtype`: [sum of rows, cols].
std::vector<uint16_t> fused_rows(std::initializer_list<const WeightMatrix*> parts, DType dtype) {
  const int64_t cols = (*parts.begin())->cols;
  int64_t rows = 0;
  for (const WeightMatrix* w : parts) {
    QLLM_CHECK(w->cols == cols, "fusing {} ({} columns) with {} columns", w->name, w->cols, cols);
    rows += w->rows;
  }
  std::vector<uint16_t> out(static_cast<size_t>(rows * cols));
  std::vector<float> row(static_cast<size_t>(cols));
  int64_t r = 0;
  for (const WeightMatrix* w : parts) {
    for (int64_t i = 0; i < w->rows; ++i, ++r) {
      w->row_to_f32(i, row.data());
      uint16_t* dst = out.data() + r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        dst[c] = dtype == DType::F16 ? float_to_half_bits(row[c]) : float_to_bf16_bits(row[c]);
      }
    }
  }
  return out;
}

QuantLinear make_linear(std::initializer_list<const WeightMatrix*> parts, const QuantMode& mode,
                        DType activation) {
  // Pre-quantized parts kept as stored (model/prequantized.h): their rows fused, uploaded as they are.
  const WeightMatrix& first = **parts.begin();
  const bool stored = keeps_stored_int4(first, mode, activation);
  std::vector<const Int4Matrix*> stored_parts;
  for (const WeightMatrix* w : parts) {
    QLLM_CHECK(keeps_stored_int4(*w, mode, activation) == stored,
               "fusing {} ({}) with {} ({}): the parts of a fused projection must be stored alike",
               first.name, stored ? "INT4 kept as stored" : "quantized at load", w->name,
               stored ? "quantized at load" : "INT4 kept as stored");
    if (stored) stored_parts.push_back(w->int4.get());
  }
  if (stored) return QuantLinear(concat_int4_rows(stored_parts), activation);
  const DType dtype = staging_dtype(parts, activation);
  const std::vector<uint16_t> host = fused_rows(parts, dtype);
  const int64_t cols = (*parts.begin())->cols;
  const auto rows = static_cast<int64_t>(host.size()) / cols;
  std::vector<int64_t> part_rows;
  for (const WeightMatrix* w : parts) part_rows.push_back(w->rows);
  return QuantLinear(HostWeight{host.data(), dtype, rows, cols, part_rows}, mode, activation, nullptr);
}

// The embedding gather reads the table in whichever storage its QuantLinear keeps (a tied model's lm_head).
EmbeddingTable table_of(const QuantLinear& linear) {
  EmbeddingTable t;
  t.vocab = linear.out_features();
  t.hidden = linear.in_features();
  if (const W4A16DeviceWeights* w = linear.int4()) {
    t.storage = EmbeddingStorage::Int4;
    t.dtype = linear.activation();
    t.int4_qweight = w->qweight.data();
    t.int4_scales = w->scales.data();
    t.int4_zero_offsets = w->layout.zero_point ? w->zero_offsets.data() : nullptr;
    t.int4_mins = w->layout.min_offset ? w->zero_offsets.data() : nullptr;
    t.int4_group_k = w->layout.group_k;
  } else if (const Int8DeviceWeights* w = linear.int8()) {
    t.storage = EmbeddingStorage::Int8Rows;
    t.int8_values = w->values.data();
    t.int8_absmax = w->absmax.data();
    t.int8_row_stride = w->k;  // stored padded to a multiple of 64
  } else {
    t.storage = EmbeddingStorage::Dense;
    t.dtype = linear.mode().dense_dtype;
    t.dense = linear.dense();
  }
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Model

LlamaCudaModel::LlamaCudaModel(LlamaConfig config, const LlamaWeights& weights, const ModelQuant& quant,
                               bool verbose)
    : config_(std::move(config)), quant_(quant), activation_(quant.activation_dtype()) {
  const DeviceInfo info = query_device();
  QLLM_CHECK(info.available, "--device cuda: {}", info.reason);
  device_name_ = info.name;
  QLLM_CHECK(config_.head_dim == 64 || config_.head_dim == 128,
             "the GPU engine supports head_dim 64 and 128; this model has head_dim {} (use --device cpu)",
             config_.head_dim);
  // Each QuantLinear stages, quantizes and frees one weight at a time (synchronously, on the legacy
  // stream), so the peak is the quantized model plus one fused weight in 16 bits.
  Progress progress("quantizing to " + quant_.name(), config_.num_hidden_layers + 1, verbose);
  for (size_t i = 0; i < weights.layers.size(); ++i) {
    const LayerWeights& w = weights.layers[i];
    const QuantMode& m = quant_.linear;
    layers_.push_back(
        Layer{to_device<float>(w.attn_norm, "attn_norm"), to_device<float>(w.ffn_norm, "ffn_norm"),
              make_linear({&w.wq, &w.wk, &w.wv}, m, activation_), make_linear({&w.wo}, m, activation_),
              make_linear({&w.w_gate, &w.w_up}, m, activation_), make_linear({&w.w_down}, m, activation_)});
    progress.update(static_cast<int64_t>(i) + 1);
  }
  lm_head_.emplace(make_linear({&weights.lm_head}, quant_.lm_head, activation_));
  if (!config_.tie_word_embeddings)
    embed_.emplace(make_linear({&weights.embed}, quant_.lm_head, activation_));
  final_norm_ = to_device<float>(weights.final_norm, "final_norm");
  std::vector<float> inv_freq;
  for (double f : rope_inverse_frequencies(config_)) inv_freq.push_back(static_cast<float>(f));
  inv_freq_ = to_device<float>(inv_freq, "rope inverse frequencies");
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  progress.finish(fmt::format("{:.1f} MiB of weights on {}", weight_bytes() / 1048576.0, device_name_));
}

uint64_t LlamaCudaModel::weight_bytes() const {
  uint64_t bytes = lm_head_->weight_bytes() + final_norm_.bytes() + (embed_ ? embed_->weight_bytes() : 0);
  for (const Layer& l : layers_) {
    bytes += l.attn_norm.bytes() + l.ffn_norm.bytes();
    for (const QuantLinear* w : {&l.qkv, &l.o, &l.gate_up, &l.down}) bytes += w->weight_bytes();
  }
  return bytes;
}

EmbeddingTable LlamaCudaModel::embedding_table() const {
  return table_of(embed_ ? *embed_ : *lm_head_);
}

std::unique_ptr<Context> LlamaCudaModel::new_context(const ContextOptions& options) const {
  return std::make_unique<LlamaCudaContext>(*this, options);
}

// ---------------------------------------------------------------------------------------------------------
// Context: buffers

// What the host knows of one pass (the device copy of the batch description is in Workspace::batch).
struct LlamaCudaContext::BatchLayout {
  int64_t tokens = 0;  // rows of this pass
  int num_seqs = 0;    // sequences of this pass
  int64_t max_q_len = 0;
  int64_t max_kv_len = 0;
  bool decode = false;            // every sequence feeds one token: row s is sequence s's last token
  std::vector<int64_t> last_row;  // [num_seqs] row of each sequence's last token
};

struct LlamaCudaContext::Workspace {
  // Offsets (in int32 elements) of the batch description in `batch` / `batch_host`: fixed, so that the
  // pointers a captured graph holds stay valid while the values change between replays.
  int64_t ids = 0, positions = 0, slots = 0, targets = 0, seq_q_start = 0, seq_kv_len = 0, block_table = 0;
  int64_t batch_ints = 0;
  int max_pass_seqs = 0;
  int64_t logit_rows = 0;  // rows of logits computed at once (perplexity, all logits)

  DeviceBuffer<int32_t> batch;
  PinnedBuffer<int32_t> batch_host;
  DeviceBuffer<float> residual;        // f32 [tokens, hidden]
  DeviceBuffer<float> residual_spare;  // f32 [tokens, hidden]: a norm folded into a GEMM writes the sum here
  DeviceBuffer<uint16_t> x;            // T [tokens, hidden]: a block's normalized input, last: the final norm
  DeviceBuffer<uint16_t> qkv;          // T [tokens, (Hq + 2 Hkv) D]
  DeviceBuffer<uint16_t> q;            // T [tokens, Hq D] rotated queries
  DeviceBuffer<uint16_t> attn;         // T [tokens, Hq D]
  DeviceBuffer<uint16_t> delta;        // T [tokens, hidden]: a block's output before the residual add
  DeviceBuffer<uint16_t> gate_up;      // T [tokens, 2 I]
  DeviceBuffer<uint16_t> act;          // T [tokens, I]
  DeviceBuffer<uint16_t> last_x;  // T [sequences, hidden]: the final norm's row of each sequence's last token
  DeviceBuffer<uint16_t> logits;  // T [max(logit_rows, sequences), vocab]
  DeviceBuffer<double> nll;       // [tokens]
  DeviceBuffer<int> error_flag;   // set by the gather, the sampler and the log-probs on bad ids or NaN
  PinnedBuffer<uint16_t> logits_host;
  PinnedBuffer<double> nll_host;
  PinnedBuffer<int> error_flag_host;

  // Sampling on the device: per-sequence parameters, the penalty's ids, the drawn tokens.
  DeviceBuffer<SamplingRowState> row_state;  // [sequences]
  PinnedBuffer<SamplingRowState> row_state_host;
  DeviceBuffer<int32_t> recent;  // [sequences, max_positions] history ids, -1 padded
  PinnedBuffer<int32_t> recent_host;
  DeviceBuffer<int32_t> sampled;  // [sequences]
  PinnedBuffer<int32_t> sampled_host;
  // Log-probabilities asked with the draws (ForwardOutputs::sampled_logprobs, top_*).
  DeviceBuffer<float> sampled_logprobs;  // [sequences]
  PinnedBuffer<float> sampled_logprobs_host;
  DeviceBuffer<int32_t> top_ids;  // [sequences, kMaxTopLogprobs]
  PinnedBuffer<int32_t> top_ids_host;
  DeviceBuffer<float> top_logprobs;  // [sequences, kMaxTopLogprobs]
  PinnedBuffer<float> top_logprobs_host;

  // CUDA graphs of the decode step (layers and lm_head), by the number of sequences (a power-of-two bucket).
  std::map<std::pair<int, int64_t>, cudaGraphExec_t> decode_graphs;  // by (batch bucket, key-length bucket)
};

namespace {

size_t elements(int64_t a, int64_t b) {
  return static_cast<size_t>(a) * static_cast<size_t>(b);
}

}  // namespace

LlamaCudaContext::LlamaCudaContext(const LlamaCudaModel& model, const ContextOptions& options)
    : model_(model),
      config_(model.config()),
      max_sequences_(options.max_sequences),
      max_positions_(options.max_positions > 0 ? options.max_positions
                                               : model.config().max_position_embeddings),
      max_batch_tokens_(options.max_batch_tokens),
      lengths_(static_cast<size_t>(std::max(options.max_sequences, 0)), 0),
      pages_(kv_pages_for(max_positions_, std::max(options.max_sequences, 1), kDefaultKvPageSize),
             kDefaultKvPageSize, std::max(options.max_sequences, 1),
             static_cast<int>(kv_pages_per_sequence(max_positions_, kDefaultKvPageSize))),
      attention_(static_cast<int>(model.config().num_attention_heads),
                 static_cast<int>(model.config().num_key_value_heads),
                 static_cast<int>(model.config().head_dim)),
      ws_(std::make_unique<Workspace>()) {
  QLLM_CHECK(max_positions_ <= config_.max_position_embeddings,
             "context of {} positions exceeds the model's max_position_embeddings {}", max_positions_,
             config_.max_position_embeddings);
  QLLM_CHECK(max_sequences_ > 0 && max_batch_tokens_ > 0,
             "a context needs at least one sequence and one token per pass (got {} and {})", max_sequences_,
             max_batch_tokens_);
  QLLM_CHECK(config_.vocab_size <= kMaxSamplingVocab, "the GPU sampler takes vocabularies up to {}, not {}",
             kMaxSamplingVocab, config_.vocab_size);
  QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));

  // The KV cache: one K and one V pool per layer, each [num_pages, Hkv, page_size, D].
  const size_t pool =
      elements(pages_.num_pages(), config_.num_key_value_heads * kDefaultKvPageSize * config_.head_dim);
  const std::string what = fmt::format("the KV cache ({} sequences x {} positions; lower --ctx or --batch)",
                                       max_sequences_, max_positions_);
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    k_pools_.emplace_back(pool, what.c_str());
    v_pools_.emplace_back(pool, what.c_str());
  }
  allocate_workspace();
  // Workspaces of the GEMMs and of attention, sized for the largest pass (nothing is allocated later).
  Workspace& w = *ws_;
  attention_.reserve(w.max_pass_seqs, max_batch_tokens_, max_positions_);
  for (const LlamaCudaModel::Layer& l : model_.layers()) {
    for (const QuantLinear* q : {&l.qkv, &l.o, &l.gate_up, &l.down}) q->reserve(gemm_, max_batch_tokens_);
  }
  model_.lm_head().reserve(gemm_, std::max<int64_t>(w.logit_rows, w.max_pass_seqs));
  if (model_.uses_int8()) gemm_.int8.clear_status(stream_);
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void LlamaCudaContext::allocate_workspace() {
  Workspace& w = *ws_;
  const int64_t T = max_batch_tokens_;
  w.max_pass_seqs = static_cast<int>(std::min<int64_t>(max_sequences_, T));
  const int64_t S = w.max_pass_seqs;
  w.ids = 0;
  w.positions = T;
  w.slots = 2 * T;
  w.targets = 3 * T;
  w.seq_q_start = 4 * T;
  w.seq_kv_len = w.seq_q_start + S + 1;
  w.block_table = w.seq_kv_len + S;
  w.batch_ints = w.block_table + S * pages_.max_pages_per_seq();
  w.batch = DeviceBuffer<int32_t>(static_cast<size_t>(w.batch_ints), "the batch description");
  w.batch_host = PinnedBuffer<int32_t>(static_cast<size_t>(w.batch_ints), "the batch description");

  const int64_t hidden = config_.hidden_size;
  const int64_t I = config_.intermediate_size;
  const int64_t qkv_dim = config_.q_dim() + 2 * config_.kv_dim();
  w.logit_rows = std::min<int64_t>(T, 128);
  const int64_t logit_rows = std::max(w.logit_rows, S);
  w.residual = DeviceBuffer<float>(elements(T, hidden), "the residual stream");
  w.residual_spare = DeviceBuffer<float>(elements(T, hidden), "the residual stream");
  w.x = DeviceBuffer<uint16_t>(elements(T, hidden), "activations");
  w.qkv = DeviceBuffer<uint16_t>(elements(T, qkv_dim), "activations");
  w.q = DeviceBuffer<uint16_t>(elements(T, config_.q_dim()), "activations");
  w.attn = DeviceBuffer<uint16_t>(elements(T, config_.q_dim()), "activations");
  w.delta = DeviceBuffer<uint16_t>(elements(T, hidden), "activations");
  w.gate_up = DeviceBuffer<uint16_t>(elements(T, 2 * I), "activations");
  w.act = DeviceBuffer<uint16_t>(elements(T, I), "activations");
  w.last_x = DeviceBuffer<uint16_t>(elements(S, hidden), "activations");
  w.logits = DeviceBuffer<uint16_t>(elements(logit_rows, config_.vocab_size), "logits");
  w.nll = DeviceBuffer<double>(static_cast<size_t>(T), "log-likelihoods");
  w.error_flag = DeviceBuffer<int>(1, "flags");
  w.logits_host = PinnedBuffer<uint16_t>(elements(logit_rows, config_.vocab_size), "logits");
  w.nll_host = PinnedBuffer<double>(static_cast<size_t>(T), "log-likelihoods");
  w.error_flag_host = PinnedBuffer<int>(1, "flags");
  w.row_state = DeviceBuffer<SamplingRowState>(static_cast<size_t>(S), "sampling state");
  w.row_state_host = PinnedBuffer<SamplingRowState>(static_cast<size_t>(S), "sampling state");
  w.recent = DeviceBuffer<int32_t>(elements(S, max_positions_), "sampling history");
  w.recent_host = PinnedBuffer<int32_t>(elements(S, max_positions_), "sampling history");
  w.sampled = DeviceBuffer<int32_t>(static_cast<size_t>(S), "sampled tokens");
  w.sampled_host = PinnedBuffer<int32_t>(static_cast<size_t>(S), "sampled tokens");
  w.sampled_logprobs = DeviceBuffer<float>(static_cast<size_t>(S), "sampled log-probabilities");
  w.sampled_logprobs_host = PinnedBuffer<float>(static_cast<size_t>(S), "sampled log-probabilities");
  w.top_ids = DeviceBuffer<int32_t>(elements(S, kMaxTopLogprobs), "top log-probabilities");
  w.top_ids_host = PinnedBuffer<int32_t>(elements(S, kMaxTopLogprobs), "top log-probabilities");
  w.top_logprobs = DeviceBuffer<float>(elements(S, kMaxTopLogprobs), "top log-probabilities");
  w.top_logprobs_host = PinnedBuffer<float>(elements(S, kMaxTopLogprobs), "top log-probabilities");
  // Zeroed once: rows a pass does not write (padding rows of a graph bucket) then hold finite values.
  for (auto* b : {&w.x, &w.qkv, &w.q, &w.attn, &w.delta, &w.gate_up, &w.act, &w.last_x, &w.logits})
    b->fill_bytes_async(0, stream_);
  w.residual.fill_bytes_async(0, stream_);
  w.residual_spare.fill_bytes_async(0, stream_);
  w.error_flag.fill_bytes_async(0, stream_);
}

LlamaCudaContext::~LlamaCudaContext() {
  if (stream_) cudaStreamSynchronize(stream_);
  for (auto& [key, exec] : ws_->decode_graphs) cudaGraphExecDestroy(exec);
  if (stream_) cudaStreamDestroy(stream_);
}

uint64_t LlamaCudaContext::memory_bytes() const {
  uint64_t bytes = 0;
  for (const auto& p : k_pools_) bytes += 2 * p.bytes();
  const Workspace& w = *ws_;
  for (const auto* b : {&w.x, &w.qkv, &w.q, &w.attn, &w.delta, &w.gate_up, &w.act, &w.last_x, &w.logits})
    bytes += b->bytes();
  bytes += w.residual.bytes() + w.residual_spare.bytes() + w.nll.bytes() + w.batch.bytes() +
           w.recent.bytes() + w.row_state.bytes();
  return bytes + attention_.workspace_bytes() + gemm_.workspace_bytes();
}

int64_t LlamaCudaContext::length(int seq) const {
  QLLM_CHECK(seq >= 0 && seq < max_sequences_, "sequence {} is outside [0, {})", seq, max_sequences_);
  return lengths_[static_cast<size_t>(seq)];
}

void LlamaCudaContext::truncate(int seq, int64_t length) {
  QLLM_CHECK(seq >= 0 && seq < max_sequences_, "sequence {} is outside [0, {})", seq, max_sequences_);
  int64_t& held = lengths_[static_cast<size_t>(seq)];
  held = std::clamp<int64_t>(length, 0, held);
  pages_.truncate(seq, held);
}

// ---------------------------------------------------------------------------------------------------------
// Context: the forward pass

LlamaCudaContext::BatchLayout LlamaCudaContext::stage_batch(std::span<const SequenceInput> batch,
                                                            std::span<const int32_t> targets) {
  Workspace& w = *ws_;
  BatchLayout layout;
  layout.num_seqs = static_cast<int>(batch.size());
  QLLM_CHECK(layout.num_seqs <= w.max_pass_seqs, "forward: {} sequences in one pass, at most {}",
             layout.num_seqs, w.max_pass_seqs);
  int32_t* h = w.batch_host.data();
  const int64_t table_width = pages_.max_pages_per_seq();
  int64_t row = 0;
  layout.decode = true;
  h[w.seq_q_start] = 0;
  for (int s = 0; s < layout.num_seqs; ++s) {
    const SequenceInput& in = batch[static_cast<size_t>(s)];
    const auto n = static_cast<int64_t>(in.tokens.size());
    const int64_t end = in.start_position + n;
    pages_.truncate(in.seq, in.start_position);  // positions from start_position on are replaced
    pages_.reserve(in.seq, end);
    for (int64_t i = 0; i < n; ++i, ++row) {
      h[w.ids + row] = in.tokens[static_cast<size_t>(i)];
      h[w.positions + row] = static_cast<int32_t>(in.start_position + i);
      h[w.slots + row] = static_cast<int32_t>(pages_.slot(in.seq, in.start_position + i));
      h[w.targets + row] = targets.empty() ? -1 : targets[static_cast<size_t>(row)];
    }
    h[w.seq_q_start + s + 1] = static_cast<int32_t>(row);
    h[w.seq_kv_len + s] = static_cast<int32_t>(end);
    const std::span<const int32_t> table = pages_.block_table_row(in.seq);
    std::copy(table.begin(), table.end(), h + w.block_table + s * table_width);
    layout.max_q_len = std::max(layout.max_q_len, n);
    layout.max_kv_len = std::max(layout.max_kv_len, end);
    layout.decode = layout.decode && n == 1;
    layout.last_row.push_back(row - 1);
  }
  layout.tokens = row;
  return layout;
}

void LlamaCudaContext::upload_batch() {
  Workspace& w = *ws_;
  QLLM_CUDA_CHECK(cudaMemcpyAsync(w.batch.data(), w.batch_host.data(),
                                  static_cast<size_t>(w.batch_ints) * sizeof(int32_t), cudaMemcpyHostToDevice,
                                  stream_));
}

void LlamaCudaContext::normed_forward(const QuantLinear& linear, const float* norm_weight, const void* delta,
                                      void* out, int64_t tokens, float*& residual) {
  Workspace& w = *ws_;
  float* spare = residual == w.residual.data() ? w.residual_spare.data() : w.residual.data();
  XPrologue fused;
  fused.kind = XPrologueKind::ResidualRmsNorm;
  fused.residual = residual;
  fused.delta = delta;
  fused.residual_out = spare;
  fused.norm_weight = norm_weight;
  fused.eps = config_.rms_norm_eps;
  if (linear.forward_fused(gemm_, fused, out, tokens, stream_)) {
    if (delta != nullptr) residual = spare;
    return;
  }
  launch_norm(tokens, residual, delta, norm_weight);
  linear.forward(gemm_, w.x.data(), out, tokens, stream_);
}

void LlamaCudaContext::launch_norm(int64_t tokens, float* residual, const void* delta, const float* weight) {
  RmsNormParams norm;
  norm.tokens = tokens;
  norm.hidden = config_.hidden_size;
  norm.eps = config_.rms_norm_eps;
  norm.dtype = model_.activation_dtype();
  norm.residual = residual;
  norm.delta = delta;
  norm.weight = weight;
  norm.out = ws_->x.data();
  launch_rmsnorm(norm, stream_);
}

float* LlamaCudaContext::run_layers(const BatchLayout& layout, bool final_norm) {
  Workspace& w = *ws_;
  const DType dtype = model_.activation_dtype();
  const int64_t T = layout.tokens;
  const int32_t* batch = w.batch.data();

  EmbeddingParams embed;
  embed.table = model_.embedding_table();
  embed.tokens = T;
  embed.ids = batch + w.ids;
  embed.out = w.residual.data();
  embed.error_flag = w.error_flag.data();
  launch_embedding(embed, stream_);

  float* residual = w.residual.data();  // where the residual stream is (normed_forward may move it)

  RopeKvParams rope;
  rope.qkv = w.qkv.data();
  rope.q_out = w.q.data();
  rope.inv_freq = model_.inv_freq();
  rope.positions = batch + w.positions;
  rope.slot_mapping = batch + w.slots;
  rope.dtype = dtype;
  rope.num_tokens = T;
  rope.num_q_heads = static_cast<int>(config_.num_attention_heads);
  rope.num_kv_heads = static_cast<int>(config_.num_key_value_heads);
  rope.head_dim = static_cast<int>(config_.head_dim);
  rope.page_size = pages_.page_size();
  rope.num_pages = pages_.num_pages();

  PagedAttentionParams att;
  att.q = w.q.data();
  att.out = w.attn.data();
  att.block_table = batch + w.block_table;
  att.seq_q_start = batch + w.seq_q_start;
  att.seq_kv_len = batch + w.seq_kv_len;
  att.dtype = dtype;
  att.num_seqs = layout.num_seqs;
  att.num_tokens = T;
  att.num_q_heads = rope.num_q_heads;
  att.num_kv_heads = rope.num_kv_heads;
  att.head_dim = rope.head_dim;
  att.page_size = rope.page_size;
  att.num_pages = rope.num_pages;
  att.max_pages_per_seq = pages_.max_pages_per_seq();
  att.max_q_len = layout.max_q_len;
  att.max_kv_len = layout.max_kv_len;

  SwigluParams swiglu;
  swiglu.tokens = T;
  swiglu.intermediate = config_.intermediate_size;
  swiglu.dtype = dtype;
  swiglu.gate_up = w.gate_up.data();
  swiglu.out = w.act.data();

  XPrologue fused_swiglu;
  fused_swiglu.kind = XPrologueKind::Swiglu;
  fused_swiglu.gate_up = w.gate_up.data();

  for (size_t l = 0; l < model_.layers().size(); ++l) {
    const LlamaCudaModel::Layer& layer = model_.layers()[l];
    // Attention block: residual += delta (the previous MLP's output; none before the first layer).
    normed_forward(layer.qkv, layer.attn_norm.data(), l == 0 ? nullptr : w.delta.data(), w.qkv.data(), T,
                   residual);
    rope.k_pool = k_pools_[l].data();
    rope.v_pool = v_pools_[l].data();
    att.k_pool = rope.k_pool;
    att.v_pool = rope.v_pool;
    launch_rope_kv(rope, stream_);
    attention_.run(att, stream_);
    layer.o.forward(gemm_, w.attn.data(), w.delta.data(), T, stream_);
    // MLP block.
    normed_forward(layer.gate_up, layer.ffn_norm.data(), w.delta.data(), w.gate_up.data(), T, residual);
    if (!layer.down.forward_fused(gemm_, fused_swiglu, w.delta.data(), T, stream_)) {
      launch_swiglu(swiglu, stream_);
      layer.down.forward(gemm_, w.act.data(), w.delta.data(), T, stream_);
    }
  }
  if (final_norm) launch_norm(T, residual, w.delta.data(), model_.final_norm());
  return residual;
}

void LlamaCudaContext::run_decode_graph(const BatchLayout& layout) {
  Workspace& w = *ws_;
  // Buckets of powers of two: few graphs, at most twice the rows of the real batch.
  int bucket = 1;
  while (bucket < layout.num_seqs) bucket *= 2;
  bucket = std::min(bucket, w.max_pass_seqs);
  // Padding sequences feed no query rows (equal seq_q_start) and their rows' slots are -1: nothing is stored.
  int32_t* h = w.batch_host.data();
  for (int s = layout.num_seqs; s < bucket; ++s) {
    h[w.ids + s] = 0;
    h[w.positions + s] = 0;
    h[w.slots + s] = -1;
    h[w.seq_q_start + s + 1] = layout.num_seqs;
    h[w.seq_kv_len + s] = 0;
    std::fill_n(h + w.block_table + static_cast<int64_t>(s) * pages_.max_pages_per_seq(),
                pages_.max_pages_per_seq(), -1);
  }
  upload_batch();
  // Key lengths in buckets of powers of two too: the attention's split over the keys is chosen from the
  // bound the graph is captured with, and a short context run with the splits of the longest would launch
  // mostly empty CTAs and a combine pass it does not need.
  int64_t kv_bucket = attention::kDecodeGranule;
  while (kv_bucket < layout.max_kv_len) kv_bucket *= 2;
  kv_bucket = std::min<int64_t>(kv_bucket, max_positions_);
  auto found = w.decode_graphs.find({bucket, kv_bucket});
  if (found == w.decode_graphs.end()) {
    BatchLayout bounds;  // the host-known bounds the graph is captured with
    bounds.tokens = bucket;
    bounds.num_seqs = bucket;
    bounds.max_q_len = 1;
    bounds.max_kv_len = kv_bucket;
    bounds.decode = true;
    cudaGraph_t graph = nullptr;
    QLLM_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      float* residual = run_layers(bounds, /*final_norm=*/false);
      normed_forward(model_.lm_head(), model_.final_norm(), w.delta.data(), w.logits.data(), bucket,
                     residual);
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    QLLM_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    QLLM_CUDA_CHECK(status);
    found = w.decode_graphs.emplace(std::make_pair(bucket, kv_bucket), exec).first;
  }
  QLLM_CUDA_CHECK(cudaGraphLaunch(found->second, stream_));
}

void LlamaCudaContext::last_logits(const BatchLayout& layout) {
  Workspace& w = *ws_;
  const int64_t hidden = config_.hidden_size;
  // The last token's row of each sequence, gathered so that lm_head runs on those rows only.
  const auto bytes = static_cast<size_t>(hidden) * sizeof(uint16_t);
  for (int s = 0; s < layout.num_seqs; ++s) {
    QLLM_CUDA_CHECK(cudaMemcpyAsync(w.last_x.data() + s * hidden, w.x.data() + layout.last_row[s] * hidden,
                                    bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  model_.lm_head().forward(gemm_, w.last_x.data(), w.logits.data(), layout.num_seqs, stream_);
}

void LlamaCudaContext::sample(std::span<const TokenSampling> sampling) {
  Workspace& w = *ws_;
  const auto rows = static_cast<int64_t>(sampling.size());
  int64_t window = 0;
  for (const TokenSampling& s : sampling) {
    if (s.params.repetition_penalty != 1.0f)
      window = std::max(window, static_cast<int64_t>(s.history.size()));
  }
  QLLM_CHECK(window <= max_positions_, "sampling: a history of {} ids, more than the context's {} positions",
             window, max_positions_);
  for (int64_t r = 0; r < rows; ++r) {
    const TokenSampling& s = sampling[static_cast<size_t>(r)];
    SamplingRowState& state = w.row_state_host.data()[r];
    state = SamplingRowState{};
    state.temperature = s.params.temperature;
    state.top_k = static_cast<int32_t>(std::min<int64_t>(s.params.top_k, INT32_MAX));
    state.top_p = s.params.top_p;
    state.min_p = s.params.min_p;
    state.repetition_penalty = s.params.repetition_penalty;
    state.seed = s.params.seed;
    state.step = s.step;
    check_sampling_row(state);
    if (window > 0) {
      int32_t* ids = w.recent_host.data() + r * window;
      const size_t n = s.params.repetition_penalty != 1.0f ? s.history.size() : 0;
      std::copy_n(s.history.begin(), n, ids);
      std::fill(ids + n, ids + window, -1);
    }
  }
  QLLM_CUDA_CHECK(cudaMemcpyAsync(w.row_state.data(), w.row_state_host.data(),
                                  static_cast<size_t>(rows) * sizeof(SamplingRowState),
                                  cudaMemcpyHostToDevice, stream_));
  if (window > 0) {
    QLLM_CUDA_CHECK(cudaMemcpyAsync(w.recent.data(), w.recent_host.data(),
                                    elements(rows, window) * sizeof(int32_t), cudaMemcpyHostToDevice,
                                    stream_));
  }
  SampleTokensParams p;
  p.rows = rows;
  p.vocab = config_.vocab_size;
  p.dtype = model_.activation_dtype();
  p.logits = w.logits.data();
  p.row_state = w.row_state.data();
  p.recent_ids = window > 0 ? w.recent.data() : nullptr;
  p.window = window;
  p.tokens = w.sampled.data();
  p.error_flag = w.error_flag.data();
  launch_sample_tokens(p, stream_);
  QLLM_CUDA_CHECK(cudaMemcpyAsync(w.sampled_host.data(), w.sampled.data(),
                                  static_cast<size_t>(rows) * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                  stream_));
}

void LlamaCudaContext::sampled_logprobs(int64_t rows, const ForwardOutputs& outputs) {
  Workspace& w = *ws_;
  if (!outputs.sampled_logprobs.empty()) {
    TokenLogProbsParams p;
    p.rows = rows;
    p.vocab = config_.vocab_size;
    p.dtype = model_.activation_dtype();
    p.logits = w.logits.data();
    p.targets = w.sampled.data();
    p.logprob = w.sampled_logprobs.data();
    p.error_flag = w.error_flag.data();
    launch_token_logprobs(p, stream_);
    QLLM_CUDA_CHECK(cudaMemcpyAsync(w.sampled_logprobs_host.data(), w.sampled_logprobs.data(),
                                    static_cast<size_t>(rows) * sizeof(float), cudaMemcpyDeviceToHost,
                                    stream_));
  }
  if (outputs.top_logprobs > 0) {
    TopLogProbsParams p;
    p.rows = rows;
    p.vocab = config_.vocab_size;
    p.k = outputs.top_logprobs;
    p.dtype = model_.activation_dtype();
    p.logits = w.logits.data();
    p.ids = w.top_ids.data();
    p.logprobs = w.top_logprobs.data();
    p.error_flag = w.error_flag.data();
    launch_top_logprobs(p, stream_);
    const size_t n = elements(rows, p.k);
    QLLM_CUDA_CHECK(cudaMemcpyAsync(w.top_ids_host.data(), w.top_ids.data(), n * sizeof(int32_t),
                                    cudaMemcpyDeviceToHost, stream_));
    QLLM_CUDA_CHECK(cudaMemcpyAsync(w.top_logprobs_host.data(), w.top_logprobs.data(), n * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream_));
  }
}

void LlamaCudaContext::copy_logits_to_host(int64_t rows, std::span<float> out) {
  Workspace& w = *ws_;
  const size_t count = elements(rows, config_.vocab_size);
  QLLM_CUDA_CHECK(cudaMemcpyAsync(w.logits_host.data(), w.logits.data(), count * sizeof(uint16_t),
                                  cudaMemcpyDeviceToHost, stream_));
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  const uint16_t* src = w.logits_host.data();
  const bool f16 = model_.activation_dtype() == DType::F16;
  for (size_t i = 0; i < count; ++i) out[i] = f16 ? half_bits_to_float(src[i]) : bf16_bits_to_float(src[i]);
}

void LlamaCudaContext::every_row_outputs(int64_t tokens, const ForwardOutputs& outputs) {
  Workspace& w = *ws_;
  const int64_t vocab = config_.vocab_size;
  for (int64_t first = 0; first < tokens; first += w.logit_rows) {
    const int64_t rows = std::min(w.logit_rows, tokens - first);
    model_.lm_head().forward(gemm_, w.x.data() + first * config_.hidden_size, w.logits.data(), rows, stream_);
    if (!outputs.nll.empty()) {
      TokenLogProbsParams p;
      p.rows = rows;
      p.vocab = vocab;
      p.dtype = model_.activation_dtype();
      p.logits = w.logits.data();
      p.targets = w.batch.data() + w.targets + first;
      p.nll = w.nll.data() + first;
      p.error_flag = w.error_flag.data();
      launch_token_logprobs(p, stream_);
    }
    if (!outputs.all_logits.empty()) {
      copy_logits_to_host(rows, outputs.all_logits.subspan(static_cast<size_t>(first * vocab),
                                                           static_cast<size_t>(rows * vocab)));
    }
  }
  if (!outputs.nll.empty()) {
    QLLM_CUDA_CHECK(cudaMemcpyAsync(w.nll_host.data(), w.nll.data(),
                                    static_cast<size_t>(tokens) * sizeof(double), cudaMemcpyDeviceToHost,
                                    stream_));
  }
}

void LlamaCudaContext::finish_pass() {
  Workspace& w = *ws_;
  const bool int8 = model_.uses_int8();
  if (int8) gemm_.int8.fetch_status(stream_);
  QLLM_CUDA_CHECK(cudaMemcpyAsync(w.error_flag_host.data(), w.error_flag.data(), sizeof(int),
                                  cudaMemcpyDeviceToHost, stream_));
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (w.error_flag_host.data()[0] != 0) {
    w.error_flag.fill_bytes_async(0, stream_);  // the next pass starts clean
    QLLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    throw Error(
        "forward: a token id outside the vocabulary or a non-finite logit on the GPU (the model's weights or "
        "activations overflowed)");
  }
  if (int8) {
    gemm_.int8.clear_status(stream_);
    gemm_.int8.check();  // throws on NaN/Inf activations or too many outlier columns
  }
}

void LlamaCudaContext::forward(std::span<const SequenceInput> batch, const ForwardOutputs& outputs) {
  const int64_t T = validate_forward(*this, batch, outputs);
  Workspace& w = *ws_;
  const BatchLayout layout = stage_batch(batch, outputs.targets);
  for (const SequenceInput& s : batch) {
    lengths_[static_cast<size_t>(s.seq)] = s.start_position + static_cast<int64_t>(s.tokens.size());
  }
  const bool every_row = !outputs.all_logits.empty() || !outputs.nll.empty();
  const bool last_row = !outputs.last_logits.empty() || !outputs.sampled.empty();
  if (layout.decode && !every_row) {
    run_decode_graph(layout);  // the logits of every sequence's token are in w.logits
  } else {
    upload_batch();
    run_layers(layout);
    if (last_row) last_logits(layout);
  }
  if (!outputs.sampled.empty()) {
    sample(outputs.sampling);
    sampled_logprobs(layout.num_seqs, outputs);
  }
  if (!outputs.last_logits.empty()) copy_logits_to_host(layout.num_seqs, outputs.last_logits);
  if (every_row) every_row_outputs(T, outputs);
  finish_pass();
  if (!outputs.nll.empty()) std::copy_n(w.nll_host.data(), T, outputs.nll.begin());
  if (!outputs.sampled.empty()) std::copy_n(w.sampled_host.data(), layout.num_seqs, outputs.sampled.begin());
  if (!outputs.sampled_logprobs.empty()) {
    std::copy_n(w.sampled_logprobs_host.data(), layout.num_seqs, outputs.sampled_logprobs.begin());
  }
  if (outputs.top_logprobs > 0) {
    const size_t n = elements(layout.num_seqs, outputs.top_logprobs);
    std::copy_n(w.top_ids_host.data(), n, outputs.top_ids.begin());
    std::copy_n(w.top_logprobs_host.data(), n, outputs.top_id_logprobs.begin());
  }
}

}  // namespace qllm
