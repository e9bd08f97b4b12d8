#include "model/gguf_model.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <set>

#include "core/checked_math.h"
#include "core/progress.h"
#include "qllm/error.h"
#include "quant/ggml_blocks.h"

namespace qllm {

namespace {

// An integer key read as int64 (GGUF writers use u32 or i32 or u64 for the same key).
int64_t get_size(const GgufFile& file, std::string_view key) {
  const int64_t value = file.get_i64(key);
  QLLM_CHECK(value > 0, "{}: {} = {} must be positive", file.name(), key, value);
  return value;
}

int64_t get_size(const GgufFile& file, std::string_view key, int64_t fallback) {
  return file.contains(key) ? get_size(file, key) : fallback;
}

float get_float(const GgufFile& file, std::string_view key, float fallback) {
  return file.contains(key) ? file.get_f32(key) : fallback;
}

void read_rope_scaling(const GgufFile& file, LlamaConfig& c) {
  if (const GgufTensor* factors = file.find_tensor("rope_freqs.weight")) {
    QLLM_CHECK(
        factors->type == GgmlType::F32 && factors->shape.size() == 1 && factors->shape[0] == c.head_dim / 2,
        "{}: tensor rope_freqs.weight must be f32 [{}] (head_dim / 2), got {} with {} dims", file.name(),
        c.head_dim / 2, ggml_type_name(factors->type), factors->shape.size());
    c.rope.type = "factors";
    c.rope.freq_factors.resize(static_cast<size_t>(c.head_dim / 2));
    for (size_t i = 0; i < c.rope.freq_factors.size(); ++i) {
      float f = 0;
      std::memcpy(&f, factors->data + i * sizeof(float), sizeof f);
      QLLM_CHECK(std::isfinite(f) && f > 0, "{}: rope_freqs.weight[{}] = {} must be a positive number",
                 file.name(), i, f);
      c.rope.freq_factors[i] = f;
    }
    return;
  }
  const std::string key = "llama.rope.scaling.type";
  if (!file.contains(key)) return;
  const std::string& type = file.get_string(key);
  if (type == "none") return;
  QLLM_CHECK(type == "linear",
             "{}: {} = '{}' is not supported (none or linear; llama3 scaling comes as "
             "the rope_freqs tensor)",
             file.name(), key, type);
  c.rope.type = "linear";
  c.rope.factor = file.get_f32("llama.rope.scaling.factor");
  QLLM_CHECK(c.rope.factor > 0, "{}: llama.rope.scaling.factor must be positive", file.name());
}

// [rows, cols] of a 2-D tensor in row-major terms (ggml lists the innermost dimension first).
std::pair<int64_t, int64_t> matrix_shape(const GgufTensor& t) {
  if (t.shape.size() != 2) return {-1, -1};
  return {t.shape[1], t.shape[0]};
}

class GgufTensorReader {
 public:
  GgufTensorReader(const GgufFile& file, LlamaWeights& weights, std::vector<std::vector<std::byte>>& copies)
      : file_(file), copies_(copies) {
    (void)weights;
  }

  // `native`: a Q4_0 / Q4_1 tensor becomes pre-quantized INT4 with its own values (WeightMatrix::int4, see
  // llama_weights_from_gguf); otherwise, and for every other type, f32 values.
  WeightMatrix matrix(const std::string& name, int64_t rows, int64_t cols, int64_t permute_head_dim = 0,
                      bool native = false) {
    const GgufTensor& t = checked(name);
    const auto [r, c] = matrix_shape(t);
    QLLM_CHECK(r == rows && c == cols, "{}: tensor '{}' has shape [{}, {}] (rows, cols), expected [{}, {}]",
               file_.name(), name, r, c, rows, cols);
    if (native && is_native_int4(t.type)) return int4_matrix(t, rows, cols, permute_head_dim);
    std::span<float> values = dequantized(t, checked_mul(rows, cols, name));
    check_finite(values, name, cols);
    if (permute_head_dim > 0) unpermute_rows(values, rows, cols, permute_head_dim);
    return WeightMatrix{name, DType::F32, values.data(), rows, cols};
  }

  std::vector<float> vector(const std::string& name, int64_t size) {
    const GgufTensor& t = checked(name);
    QLLM_CHECK(t.shape.size() == 1 && t.shape[0] == size, "{}: tensor '{}' must be a vector of {} values",
               file_.name(), name, size);
    std::vector<float> out(static_cast<size_t>(size));
    dequantize_ggml(t.type, t.span(), out);
    check_finite(out, name, size);
    return out;
  }

  const std::set<std::string>& used() const { return used_; }

  // The type of a tensor the file must have (the check with its message comes when it is read).
  GgmlType type_of(const std::string& name) const {
    const GgufTensor* t = file_.find_tensor(name);
    QLLM_CHECK(t != nullptr, "{}: missing tensor '{}'", file_.name(), name);
    return t->type;
  }

 private:
  // Q4_0 / Q4_1 blocks as an Int4Matrix (int4_from_ggml: the same nibbles, f16 scales and minimums, so the
  // same values bit for bit). Finite scales and minimums are finite weights: u * s + m cannot overflow f32.
  WeightMatrix int4_matrix(const GgufTensor& t, int64_t rows, int64_t cols, int64_t permute_head_dim) {
    Int4Matrix m = int4_from_ggml(t.type, t.span(), rows, cols);
    const int64_t groups_per_row = cols / kGgmlBlock;
    for (size_t g = 0; g < m.scales.size(); ++g) {
      const bool finite = std::isfinite(m.scale(static_cast<int64_t>(g))) &&
                          (m.mins.empty() || std::isfinite(m.min(static_cast<int64_t>(g))));
      if (!finite) {
        fail("{}: tensor '{}' holds a NaN or Inf scale or minimum in the block at [{}, {}]: corrupt weights",
             file_.name(), t.name, static_cast<int64_t>(g) / groups_per_row,
             static_cast<int64_t>(g) % groups_per_row * kGgmlBlock);
      }
    }
    if (permute_head_dim > 0) unpermute_int4_rows(m, permute_head_dim);
    WeightMatrix w{t.name, DType::F32, nullptr, rows, cols};
    validate_int4_matrix(m, file_.name() + ": " + t.name);
    w.int4 = std::make_shared<const Int4Matrix>(std::move(m));
    return w;
  }

  // unpermute_rows for INT4: a row's packed bytes, scales and minimums move together (groups lie in rows).
  static void unpermute_int4_rows(Int4Matrix& m, int64_t head_dim) {
    const Int4Matrix gguf = m;
    const int64_t row_bytes = m.cols / 2, row_groups = m.cols / kGgmlBlock;
    for (int64_t r = 0; r < m.rows; ++r) {
      const int64_t from = gguf_row_of_hf(r, head_dim);
      std::memcpy(m.packed.data() + r * row_bytes, gguf.packed.data() + from * row_bytes,
                  static_cast<size_t>(row_bytes));
      std::memcpy(m.scales.data() + r * row_groups, gguf.scales.data() + from * row_groups,
                  static_cast<size_t>(row_groups) * sizeof(uint16_t));
      if (!m.mins.empty()) {
        std::memcpy(m.mins.data() + r * row_groups, gguf.mins.data() + from * row_groups,
                    static_cast<size_t>(row_groups) * sizeof(uint16_t));
      }
    }
  }

  const GgufTensor& checked(const std::string& name) {
    const GgufTensor* t = file_.find_tensor(name);
    QLLM_CHECK(t != nullptr, "{}: missing tensor '{}'", file_.name(), name);
    QLLM_CHECK(can_dequantize_ggml(t->type),
               "{}: tensor '{}' has type {}, which qllm does not read (f32, f16, "
               "bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K)",
               file_.name(), name, ggml_type_name(t->type));
    used_.insert(name);
    return *t;
  }

  // The tensor as f32 values owned by the weights (the file holds other types or unaligned f32).
  std::span<float> dequantized(const GgufTensor& t, int64_t elements) {
    copies_.emplace_back(static_cast<size_t>(elements) * sizeof(float));
    const std::span<float> out(reinterpret_cast<float*>(copies_.back().data()),
                               static_cast<size_t>(elements));
    dequantize_ggml(t.type, t.span(), out);
    return out;
  }

  void check_finite(std::span<const float> values, const std::string& name, int64_t cols) const {
    for (size_t i = 0; i < values.size(); ++i) {
      if (!std::isfinite(values[i])) {
        fail("{}: tensor '{}' holds a NaN or Inf at element [{}, {}]: the weights are corrupt", file_.name(),
             name, static_cast<int64_t>(i) / cols, static_cast<int64_t>(i) % cols);
      }
    }
  }

  // Puts the rows of a Q or K projection back in Hugging Face's order (see gguf_row_of_hf).
  static void unpermute_rows(std::span<float> values, int64_t rows, int64_t cols, int64_t head_dim) {
    const std::vector<float> gguf(values.begin(), values.end());
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(values.data() + r * cols, gguf.data() + gguf_row_of_hf(r, head_dim) * cols,
                  static_cast<size_t>(cols) * sizeof(float));
    }
  }

  const GgufFile& file_;
  std::vector<std::vector<std::byte>>& copies_;
  std::set<std::string> used_;
};

}  // namespace

bool is_native_int4(GgmlType type) {
  return type == GgmlType::Q4_0 || type == GgmlType::Q4_1;
}

int64_t gguf_row_of_hf(int64_t r, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  const int64_t head = r / head_dim;
  const int64_t i = (r % head_dim) / half;  // which rotate-half half
  const int64_t j = r % half;
  return head * head_dim + 2 * j + i;
}

LlamaConfig llama_config_from_gguf(const GgufFile& file) {
  const std::string& arch = file.get_string("general.architecture");
  QLLM_CHECK(arch == "llama", "{}: general.architecture is '{}'; qllm runs llama-architecture models",
             file.name(), arch);
  LlamaConfig c;
  c.hidden_size = get_size(file, "llama.embedding_length");
  c.intermediate_size = get_size(file, "llama.feed_forward_length");
  c.num_hidden_layers = get_size(file, "llama.block_count");
  c.num_attention_heads = get_size(file, "llama.attention.head_count");
  c.num_key_value_heads = get_size(file, "llama.attention.head_count_kv", c.num_attention_heads);
  QLLM_CHECK(c.hidden_size % c.num_attention_heads == 0 || file.contains("llama.attention.key_length"),
             "{}: embedding_length {} is not divisible by head_count {}", file.name(), c.hidden_size,
             c.num_attention_heads);
  c.head_dim = get_size(file, "llama.attention.key_length", c.hidden_size / c.num_attention_heads);
  if (file.contains("llama.attention.value_length")) {
    QLLM_CHECK(get_size(file, "llama.attention.value_length") == c.head_dim,
               "{}: attention.value_length differs from key_length: not a llama model", file.name());
  }
  if (file.contains("llama.rope.dimension_count")) {
    QLLM_CHECK(
        get_size(file, "llama.rope.dimension_count") == c.head_dim,
        "{}: llama.rope.dimension_count {} differs from the head size {} (partial rotary embeddings are "
        "not supported)",
        file.name(), get_size(file, "llama.rope.dimension_count"), c.head_dim);
  }
  c.max_position_embeddings = get_size(file, "llama.context_length", 2048);
  c.rms_norm_eps = get_float(file, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
  c.rope_theta = get_float(file, "llama.rope.freq_base", 10000.0f);
  c.vocab_size = static_cast<int64_t>(file.get_array("tokenizer.ggml.tokens").size());
  if (file.contains("llama.vocab_size")) {
    QLLM_CHECK(get_size(file, "llama.vocab_size") == c.vocab_size,
               "{}: llama.vocab_size {} differs from the {} tokens of tokenizer.ggml.tokens", file.name(),
               get_size(file, "llama.vocab_size"), c.vocab_size);
  }
  c.tie_word_embeddings = file.find_tensor("output.weight") == nullptr;
  if (file.contains("tokenizer.ggml.bos_token_id"))
    c.bos_token_id = file.get_u32("tokenizer.ggml.bos_token_id");
  if (file.contains("tokenizer.ggml.eos_token_id")) {
    c.eos_token_ids = {static_cast<int64_t>(file.get_u32("tokenizer.ggml.eos_token_id"))};
  }
  c.dtype = "gguf";
  read_rope_scaling(file, c);
  // The same checks as config.json gets (sizes, divisibility, ids in the vocabulary).
  nlohmann::json j = c.to_hf_json();
  if (c.rope.type == "factors") j.erase("rope_scaling");
  LlamaConfig checked = LlamaConfig::from_json(j, file.name());
  checked.rope = c.rope;
  checked.dtype = c.dtype;
  return checked;
}

LlamaWeights llama_weights_from_gguf(std::shared_ptr<const GgufFile> file, const LlamaConfig& c,
                                     bool verbose) {
  LlamaWeights w;
  w.gguf_ = file;
  GgufTensorReader read(*file, w, w.copies_);
  const int64_t hidden = c.hidden_size;
  constexpr const char* kLayerTensors[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                           "ffn_gate", "ffn_up", "ffn_down"};
  // Q4_0 / Q4_1 stay INT4 (their exact values, run natively by both engines) where --quant auto can run
  // them as stored (model/prequantized.h: one format for all layer weights, one for the lm_head and
  // embedding): the layers when every one has the same Q4 type, the lm_head and embedding likewise. A file
  // that mixes types (llama.cpp's Q4_K_M, a Q4_0 file with a Q6_K output) is read as f32 values, as before.
  auto one_native_type = [&](std::span<const std::string> names) {
    const GgmlType first = read.type_of(names.front());
    for (const std::string& name : names) {
      if (read.type_of(name) != first) return false;
    }
    return is_native_int4(first);
  };
  std::vector<std::string> layer_names;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    for (const char* t : kLayerTensors) layer_names.push_back(fmt::format("blk.{}.{}.weight", i, t));
  }
  std::vector<std::string> head_names = {"token_embd.weight"};
  if (!c.tie_word_embeddings) head_names.push_back("output.weight");
  const bool native_layers = one_native_type(layer_names), native_head = one_native_type(head_names);

  w.embed = read.matrix("token_embd.weight", c.vocab_size, hidden, 0, native_head);
  Progress progress("loading layers", c.num_hidden_layers, verbose);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    progress.update(i);
    const std::string p = fmt::format("blk.{}.", i);
    LayerWeights l;
    l.attn_norm = read.vector(p + "attn_norm.weight", hidden);
    l.wq = read.matrix(p + "attn_q.weight", c.q_dim(), hidden, c.head_dim, native_layers);
    l.wk = read.matrix(p + "attn_k.weight", c.kv_dim(), hidden, c.head_dim, native_layers);
    l.wv = read.matrix(p + "attn_v.weight", c.kv_dim(), hidden, 0, native_layers);
    l.wo = read.matrix(p + "attn_output.weight", hidden, c.q_dim(), 0, native_layers);
    l.ffn_norm = read.vector(p + "ffn_norm.weight", hidden);
    l.w_gate = read.matrix(p + "ffn_gate.weight", c.intermediate_size, hidden, 0, native_layers);
    l.w_up = read.matrix(p + "ffn_up.weight", c.intermediate_size, hidden, 0, native_layers);
    l.w_down = read.matrix(p + "ffn_down.weight", hidden, c.intermediate_size, 0, native_layers);
    w.layers.push_back(std::move(l));
  }
  progress.finish();
  w.final_norm = read.vector("output_norm.weight", hidden);
  w.lm_head =
      c.tie_word_embeddings ? w.embed : read.matrix("output.weight", c.vocab_size, hidden, 0, native_head);

  std::vector<std::string> unused;
  for (const GgufTensor& t : file->tensors()) {
    if (!read.used().count(t.name) && t.name != "rope_freqs.weight") unused.push_back(t.name);
  }
  QLLM_CHECK(unused.empty(), "{}: {} tensors are not used by a {}-layer llama model, e.g. '{}'", file->name(),
             unused.size(), c.num_hidden_layers, unused.empty() ? "" : unused.front());
  return w;
}

}  // namespace qllm
