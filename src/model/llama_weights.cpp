#include "model/llama_weights.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>

#include "core/file_io.h"
#include "core/progress.h"
#include "model/quantized_checkpoint.h"
#include "qllm/error.h"
#include "qllm/half.h"

namespace qllm {

namespace {

namespace fs = std::filesystem;

std::vector<int64_t> expected_shape(int64_t rows, int64_t cols) {
  return {rows, cols};
}

// Index of the first NaN or Inf among `count` elements of `dtype` at `data`, or -1. Bit tests: all exponent
// bits set. Parallel over blocks, the smallest index wins (the same answer as a serial scan).
int64_t first_non_finite(const void* data, DType dtype, int64_t count) {
  auto bad = [&](int64_t i) {
    switch (dtype) {
      case DType::BF16:
        return (static_cast<const uint16_t*>(data)[i] & 0x7f80u) == 0x7f80u;
      case DType::F16:
        return (static_cast<const uint16_t*>(data)[i] & 0x7c00u) == 0x7c00u;
      case DType::F32: {
        uint32_t bits;
        std::memcpy(&bits, static_cast<const float*>(data) + i, 4);
        return (bits & 0x7f800000u) == 0x7f800000u;
      }
      default:  // integer types are always finite
        return false;
    }
  };
  constexpr int64_t kBlock = 1 << 16;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  int64_t first = -1;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t end = std::min(count, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; ++i) {
      if (!bad(i)) continue;
#pragma omp critical(qllm_first_non_finite)
      if (first < 0 || i < first) first = i;
      break;
    }
  }
  return first;
}

// Fails naming the file, tensor and element when a weight is NaN or Inf: the model would run and print
// garbage (or a NaN perplexity) instead.
void check_finite(const TensorView& t, DType dtype, int64_t cols) {
  const int64_t i = first_non_finite(t.data, dtype, t.numel());
  if (i < 0) return;
  fail("{}: tensor '{}' holds a NaN or Inf at element [{}, {}]: the weights are corrupt", *t.file, t.name(),
       i / cols, i % cols);
}

// The checkpoint's tensor `name`, which must exist, be a float type and have exactly `shape`.
TensorView checked_tensor(const SafetensorsCheckpoint& ckpt, const std::string& name,
                          const std::vector<int64_t>& shape) {
  QLLM_CHECK(ckpt.contains(name), "{}: missing tensor '{}' (expected shape {})", ckpt.source(), name,
             shape_string(shape));
  const TensorView t = ckpt.tensor(name);
  QLLM_CHECK(is_float(t.dtype()),
             "{}: tensor '{}' has dtype {}; weights must be BF16, F16 or F32", *t.file, name,
             safetensors_dtype_name(t.dtype()));
  QLLM_CHECK(t.shape() == shape, "{}: tensor '{}' has shape {}, expected {}", *t.file, name,
             shape_string(t.shape()), shape_string(shape));
  return t;
}

std::vector<float> load_vector(const SafetensorsCheckpoint& ckpt, const std::string& name, int64_t size) {
  const TensorView t = checked_tensor(ckpt, name, {size});
  // Copied first: a norm vector is small, and the copy is aligned whatever the file's offsets are.
  const std::vector<std::byte> bytes(t.bytes().begin(), t.bytes().end());
  check_finite(TensorView{t.info, bytes.data(), t.file}, t.dtype(), size);
  std::vector<float> out(static_cast<size_t>(size));
  WeightMatrix{name, t.dtype(), bytes.data(), 1, size}.row_to_f32(0, out.data());
  return out;
}

// Tensors the config leaves unused mean the config does not describe the checkpoint (e.g. num_hidden_layers 3
// on a 6-layer model would silently run half of it): an error naming them. Hugging Face ignores two kinds
// itself: rotary inverse frequencies saved by old versions, and lm_head.weight of a tied model.
void check_all_tensors_used(const SafetensorsCheckpoint& ckpt, const LlamaConfig& c,
                            std::set<std::string> used) {
  used.insert({"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    for (const char* name :
         {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
          "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
      used.insert(fmt::format("model.layers.{}.{}.weight", i, name));
    }
  }
  std::vector<std::string> unused;
  for (const std::string& name : ckpt.names()) {
    if (!used.count(name) && !name.ends_with("rotary_emb.inv_freq")) unused.push_back(name);
  }
  if (unused.empty()) return;
  constexpr size_t kShown = 4;
  fail(
      "{}: {} tensors are not used by the model as config.json describes it ({} layers): {}{} -- does "
      "config.json belong to this checkpoint?",
      ckpt.source(), unused.size(), c.num_hidden_layers,
      fmt::join(unused.begin(), unused.begin() + static_cast<std::ptrdiff_t>(std::min(kShown, unused.size())),
                ", "),
      unused.size() > kShown ? ", ..." : "");
}

// config.json's quantization_config beside a checkpoint directory's weights (nullopt for a single file or
// a 16-bit checkpoint).
std::optional<QuantizationConfig> quantization_config_of(const std::string& dir) {
  const fs::path config = fs::path(dir) / "config.json";
  if (!fs::is_directory(dir) || !fs::exists(config)) return std::nullopt;
  return read_quantization_config(read_json_file(config), config.string());
}

}  // namespace

void WeightMatrix::row_to_f32(int64_t row, float* out) const {
  if (int4) {
    dequantize_int4_row(*int4, row, out);
    return;
  }
  const size_t offset = static_cast<size_t>(row) * static_cast<size_t>(cols);
  switch (dtype) {
    case DType::F32:
      std::memcpy(out, static_cast<const float*>(data) + offset, cols * sizeof(float));
      return;
    case DType::BF16: {
      const uint16_t* src = static_cast<const uint16_t*>(data) + offset;
      for (int64_t i = 0; i < cols; ++i) out[i] = bf16_bits_to_float(src[i]);
      return;
    }
    case DType::F16: {
      const uint16_t* src = static_cast<const uint16_t*>(data) + offset;
      for (int64_t i = 0; i < cols; ++i) out[i] = half_bits_to_float(src[i]);
      return;
    }
    default:
      fail("weight '{}' has dtype {}, not a floating-point type", name, dtype_name(dtype));
  }
}

std::vector<LlamaWeights::Linear> LlamaWeights::linears() {
  std::vector<Linear> out;
  for (LayerWeights& l : layers) {
    for (WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) out.push_back({m, false});
  }
  out.push_back({&lm_head, true});
  if (embed.name != lm_head.name) out.push_back({&embed, true});
  return out;
}

void LlamaWeights::set_int4(const std::string& name, Int4Matrix matrix) {
  auto shared = std::make_shared<const Int4Matrix>(std::move(matrix));
  validate_int4_matrix(*shared, name);
  bool found = false;
  auto replace = [&](WeightMatrix& m) {
    if (m.name != name) return;
    QLLM_CHECK(shared->rows == m.rows && shared->cols == m.cols, "{}: INT4 weights [{}, {}] for a [{}, {}] matrix",
               name, shared->rows, shared->cols, m.rows, m.cols);
    m.int4 = shared;
    m.data = nullptr;
    m.dtype = DType::F32;
    found = true;
  };
  for (LayerWeights& l : layers) {
    for (WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) replace(*m);
  }
  replace(lm_head);
  replace(embed);
  QLLM_CHECK(found, "set_int4: the model has no linear weight named '{}'", name);
}

bool LlamaWeights::any_int4() const {
  if (embed.quantized() || lm_head.quantized()) return true;
  for (const LayerWeights& l : layers) {
    for (const WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      if (m->quantized()) return true;
    }
  }
  return false;
}

LlamaWeights LlamaWeights::load(const std::string& dir, const LlamaConfig& c, bool verbose) {
  LlamaWeights w;
  w.checkpoint_ = SafetensorsCheckpoint::open(dir);
  const SafetensorsCheckpoint& ckpt = w.checkpoint_;
  const std::optional<QuantizationConfig> quantization = quantization_config_of(dir);
  std::set<std::string> quantized_tensors;  // the tensors of INT4 weights (qweight, scales, ...)

  // Views into the mapping; a (legal but unusual) misaligned tensor is copied once so that element
  // loads are aligned. A quantized weight (`<base>.qweight` in place of `<base>.weight`) is read whole.
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    const std::string base = name.substr(0, name.size() - std::string_view(".weight").size());
    if (!ckpt.contains(name) && ckpt.contains(base + ".qweight")) {
      QLLM_CHECK(quantization.has_value(),
                 "{}: tensor '{}.qweight' is quantized but config.json has no quantization_config", ckpt.source(),
                 base);
      WeightMatrix m{name, DType::F32, nullptr, rows, cols};
      m.int4 = std::make_shared<const Int4Matrix>(
          read_int4_weight(ckpt, *quantization, base, rows, cols, quantized_tensors));
      return m;
    }
    const TensorView t = checked_tensor(ckpt, name, expected_shape(rows, cols));
    WeightMatrix m{name, t.dtype(), t.data, rows, cols};
    if (reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype()) != 0) {
      w.copies_.emplace_back(t.bytes().begin(), t.bytes().end());
      m.data = w.copies_.back().data();
    }
    check_finite(TensorView{t.info, static_cast<const std::byte*>(m.data), t.file}, m.dtype, cols);
    return m;
  };

  const int64_t hidden = c.hidden_size;
  w.embed = matrix("model.embed_tokens.weight", c.vocab_size, hidden);
  Progress progress("loading layers", c.num_hidden_layers, verbose);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    progress.update(i);
    const std::string p = fmt::format("model.layers.{}.", i);
    LayerWeights l;
    l.attn_norm = load_vector(ckpt, p + "input_layernorm.weight", hidden);
    l.wq = matrix(p + "self_attn.q_proj.weight", c.q_dim(), hidden);
    l.wk = matrix(p + "self_attn.k_proj.weight", c.kv_dim(), hidden);
    l.wv = matrix(p + "self_attn.v_proj.weight", c.kv_dim(), hidden);
    l.wo = matrix(p + "self_attn.o_proj.weight", hidden, c.q_dim());
    l.ffn_norm = load_vector(ckpt, p + "post_attention_layernorm.weight", hidden);
    l.w_gate = matrix(p + "mlp.gate_proj.weight", c.intermediate_size, hidden);
    l.w_up = matrix(p + "mlp.up_proj.weight", c.intermediate_size, hidden);
    l.w_down = matrix(p + "mlp.down_proj.weight", hidden, c.intermediate_size);
    w.layers.push_back(std::move(l));
  }
  progress.finish();
  w.final_norm = load_vector(ckpt, "model.norm.weight", hidden);
  // Tied models reuse the embedding, as Hugging Face does even when a stray lm_head.weight is present.
  w.lm_head = c.tie_word_embeddings ? w.embed : matrix("lm_head.weight", c.vocab_size, hidden);
  check_all_tensors_used(ckpt, c, quantized_tensors);
  return w;
}

}  // namespace qllm
