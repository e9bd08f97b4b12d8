#include "engine/quantize_model.h"

#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/file_io.h"
#include "core/gguf.h"
#include "core/progress.h"
#include "kernels/runtime/device_info.h"
#include "model/gguf_model.h"
#include "model/llama_weights.h"
#include "model/prequantized.h"
#include "qllm/error.h"
#include "qllm/half.h"
#include "tokenizer/gguf_vocab.h"

namespace qllm {

#if QLLM_HAVE_CUDA
// quantize_gpu.cpp: quantize_weight_int4's bits from the CUDA quantizer.
Int4Matrix quantize_weight_int4_cuda(const WeightMatrix& w, const Int4Scheme& scheme, DType activation);
#endif

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The Hugging Face files beside the weights that a loader of the output needs.
constexpr const char* kCopiedFiles[] = {
    "tokenizer.json",      "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
    "chat_template.jinja", "tokenizer.model",       "added_tokens.json"};

struct Input {
  LlamaConfig config;
  json config_json;
  LlamaWeights weights;
  std::shared_ptr<const GgufFile> gguf;                        // a GGUF input
  std::vector<std::pair<std::string, uint64_t>> tensor_bytes;  // the input's tensors as stored
  DType norm_dtype =
      DType::F32;  // the norms are written in the input's 16-bit dtype when they fit it exactly
};

Input read_input(const std::string& path, bool verbose) {
  Input in;
  if (fs::is_regular_file(path) && fs::path(path).extension() == ".gguf") {
    in.gguf = std::make_shared<const GgufFile>(GgufFile::open(path));
    in.config = llama_config_from_gguf(*in.gguf);
    QLLM_CHECK(
        in.config.rope.type != "factors",
        "{}: rope frequency factors (the rope_freqs tensor, llama 3 scaling) have no config.json form yet: "
        "quantize the Hugging Face checkpoint instead",
        path);
    in.config.dtype = "bfloat16";
    in.config_json = in.config.to_hf_json();
    in.weights = llama_weights_from_gguf(in.gguf, in.config, verbose);
    for (const GgufTensor& t : in.gguf->tensors()) in.tensor_bytes.emplace_back(t.name, t.bytes);
    return in;
  }
  QLLM_CHECK(fs::is_directory(path),
             "model '{}': expected a Hugging Face checkpoint directory or a .gguf file", path);
  in.config = LlamaConfig::load(path);
  in.config_json = read_json_file(fs::path(path) / "config.json");
  in.config_json.erase("quantization_config");  // a quantized input is re-quantized from its reconstruction
  in.weights = LlamaWeights::load(path, in.config, verbose);
  in.norm_dtype = in.weights.matrix_dtype();  // before quantization: the checkpoint's dtype
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(path);
  for (const std::string& name : ckpt.names()) in.tensor_bytes.emplace_back(name, ckpt.tensor(name).nbytes());
  return in;
}

// The size class of a tensor by its name (Hugging Face or GGUF).
int size_class(std::string_view name) {
  if (name.find("embed_tokens") != std::string_view::npos || name.starts_with("lm_head") ||
      name.starts_with("token_embd") || name.starts_with("output.")) {
    return 1;
  }
  if (name.find("norm") != std::string_view::npos || name.starts_with("rope_freqs")) return 2;
  return 0;
}

void check_options(const QuantizeOptions& o) {
  QLLM_CHECK(
      o.quant.linear.kind == QuantMode::Kind::Int4,
      "--quant {}: qllm quantize writes INT4 checkpoints (int4-global, int4-rowwise, int4-g<N>[-asym]); "
      "other modes are quantized at load (qllm generate --quant {})",
      o.quant.linear.name(), o.quant.linear.name());
  QLLM_CHECK(
      o.quant.lm_head.kind != QuantMode::Kind::Int8,
      "--quant-lm-head int8: qllm quantize writes INT4 or keeps the lm_head 16-bit (same, bf16 or f16)");
  QLLM_CHECK(
      o.format == QuantFormat::Qllm || o.quant.lm_head.is_dense(),
      "--format {}: the lm_head stays 16-bit in {} checkpoints (their loaders quantize the decoder layers "
      "only): pass --quant-lm-head bf16",
      quant_format_name(o.format), quant_format_name(o.format));
  QLLM_CHECK(!o.out_dir.empty(), "--out: no output directory given");
  const fs::path out(o.out_dir);
  QLLM_CHECK(o.force || !fs::exists(out) || (fs::is_directory(out) && fs::is_empty(out)),
             "--out: '{}' exists and is not an empty directory; pass --force to overwrite its files",
             o.out_dir);
  std::error_code ec;
  QLLM_CHECK(!fs::exists(out) || !fs::equivalent(out, fs::path(o.model), ec),
             "--out '{}' is the input model: write the quantized checkpoint elsewhere", o.out_dir);
}

bool use_gpu(DeviceKind device, std::string& name) {
#if QLLM_HAVE_CUDA
  const DeviceInfo info = query_device();
  QLLM_CHECK(device != DeviceKind::Cuda || info.available, "--device cuda: {}", info.reason);
  if (device != DeviceKind::Cpu && info.available) {
    name = info.name;
    return true;
  }
#else
  QLLM_CHECK(device != DeviceKind::Cuda, "--device cuda: this qllm was built without CUDA");
#endif
  name = "cpu (reference quantizer)";
  return false;
}

// Quantizes every linear weight in place (set_int4) with the mode of its kind; progress per weight.
// `keep_stored`: weights already quantized in their mode's format (by GPTQ) are written as they are.
void quantize_weights(LlamaWeights& weights, const ModelQuant& quant, DType activation, bool gpu,
                      bool keep_stored, bool verbose) {
  std::vector<LlamaWeights::Linear> linears = weights.linears();
  Progress progress("quantizing to " + quant.name(), static_cast<int64_t>(linears.size()), verbose);
  int64_t done = 0;
  for (const LlamaWeights::Linear& l : linears) {
    const QuantMode& mode = l.head ? quant.lm_head : quant.linear;
    const bool kept = keep_stored && keeps_stored_int4(*l.matrix, mode, activation);
    if (mode.kind == QuantMode::Kind::Int4 && !kept) {
#if QLLM_HAVE_CUDA
      Int4Matrix q = gpu ? quantize_weight_int4_cuda(*l.matrix, mode.int4, activation)
                         : quantize_weight_int4(*l.matrix, mode.int4, activation);
#else
      (void)gpu;
      Int4Matrix q = quantize_weight_int4(*l.matrix, mode.int4, activation);
#endif
      weights.set_int4(l.matrix->name, std::move(q));
    }
    progress.update(++done);
  }
  progress.finish();
}

// A 16-bit weight as the output stores it: the input's bytes when 16-bit, else (f32, a reconstruction) rounded
// to the activation dtype, as the engines round such weights at load.
TensorToWrite dense_tensor(const std::string& name, const WeightMatrix& w, DType activation) {
  if (!w.quantized() && w.dtype != DType::F32) {
    const auto* p = static_cast<const std::byte*>(w.data);
    return {name,
            w.dtype == DType::BF16 ? DType::BF16 : DType::F16,
            {w.rows, w.cols},
            {p, static_cast<size_t>(w.rows * w.cols * 2)},
            {}};
  }
  const WeightMatrix* source = &w;
  return {name,
          activation == DType::BF16 ? DType::BF16 : DType::F16,
          {w.rows, w.cols},
          {},
          [source, activation](std::span<std::byte> b) {
            const std::vector<float> values = quantizer_source(*source, activation);
            for (size_t i = 0; i < values.size(); ++i) {
              const uint16_t bits =
                  activation == DType::BF16 ? float_to_bf16_bits(values[i]) : float_to_half_bits(values[i]);
              std::memcpy(b.data() + 2 * i, &bits, 2);
            }
          }};
}

void add_matrix(std::vector<TensorToWrite>& out, const QuantizationConfig& q, const std::string& base,
                const WeightMatrix& w, DType activation) {
  // INT4 in another format than the checkpoint's is an input's stored weight whose mode here is 16-bit (a
  // GGUF Q4 lm_head with --quant-lm-head bf16): written as its reconstruction, as the engines would run it.
  if (!w.quantized() || !same_stored_format(w.int4->scheme, q.scheme)) {
    out.push_back(dense_tensor(base + ".weight", w, activation));
    return;
  }
  for (TensorToWrite& t : int4_weight_tensors(q, base, w.int4)) out.push_back(std::move(t));
}

// A norm vector: in `dtype` (the input's 16-bit dtype) when every value fits it exactly, else f32.
void add_vector(std::vector<TensorToWrite>& out, const std::string& name, const std::vector<float>& v,
                DType dtype) {
  bool exact = dtype != DType::F32;
  for (size_t i = 0; exact && i < v.size(); ++i) {
    exact = (dtype == DType::BF16 ? bf16_bits_to_float(float_to_bf16_bits(v[i]))
                                  : half_bits_to_float(float_to_half_bits(v[i]))) == v[i];
  }
  const std::vector<int64_t> shape = {static_cast<int64_t>(v.size())};
  if (!exact) {
    const auto* p = reinterpret_cast<const std::byte*>(v.data());
    out.push_back({name, DType::F32, shape, {p, v.size() * sizeof(float)}, {}});
    return;
  }
  const std::vector<float>* values = &v;
  out.push_back({name,
                 dtype == DType::BF16 ? DType::BF16 : DType::F16,
                 shape,
                 {},
                 [values, dtype](std::span<std::byte> b) {
                   for (size_t i = 0; i < values->size(); ++i) {
                     const uint16_t bits = dtype == DType::BF16 ? float_to_bf16_bits((*values)[i])
                                                                : float_to_half_bits((*values)[i]);
                     std::memcpy(b.data() + 2 * i, &bits, 2);
                   }
                 }});
}

// Every tensor of the output under Hugging Face names (a GGUF input's names are mapped).
std::vector<TensorToWrite> output_tensors(const Input& in, const QuantizationConfig& q, DType activation) {
  std::vector<TensorToWrite> out;
  const LlamaWeights& w = in.weights;
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = fmt::format("model.layers.{}.", i);
    add_vector(out, p + "input_layernorm.weight", l.attn_norm, in.norm_dtype);
    add_vector(out, p + "post_attention_layernorm.weight", l.ffn_norm, in.norm_dtype);
    const std::pair<const char*, const WeightMatrix*> matrices[] = {
        {"self_attn.q_proj", &l.wq}, {"self_attn.k_proj", &l.wk},  {"self_attn.v_proj", &l.wv},
        {"self_attn.o_proj", &l.wo}, {"mlp.gate_proj", &l.w_gate}, {"mlp.up_proj", &l.w_up},
        {"mlp.down_proj", &l.w_down}};
    for (const auto& [name, m] : matrices) add_matrix(out, q, p + name, *m, activation);
  }
  add_vector(out, "model.norm.weight", w.final_norm, in.norm_dtype);
  // Tied: the lm_head is the embedding's table, stored once (quantized with the lm_head's mode).
  add_matrix(out, q, "model.embed_tokens", in.config.tie_word_embeddings ? w.lm_head : w.embed, activation);
  if (!in.config.tie_word_embeddings) add_matrix(out, q, "lm_head", w.lm_head, activation);
  return out;
}

uint64_t bytes_of(const TensorToWrite& t) {
  uint64_t n = dtype_size(t.dtype);
  for (const int64_t d : t.shape) n *= static_cast<uint64_t>(d);
  return n;
}

std::vector<QuantizeSizes> size_table(const Input& in, const std::vector<TensorToWrite>& out,
                                      uint64_t file_bytes) {
  std::vector<QuantizeSizes> rows = {{"linear layers"}, {"embedding + lm_head"}, {"norms"}};
  const LlamaWeights& w = in.weights;
  for (const LayerWeights& l : w.layers) {
    for (const WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      ++rows[0].tensors;
      rows[0].parameters += m->rows * m->cols;
    }
    rows[2].tensors += 2;
    rows[2].parameters += 2 * in.config.hidden_size;
  }
  rows[2].tensors += 1;
  rows[2].parameters += in.config.hidden_size;
  const int64_t head_tables = in.config.tie_word_embeddings ? 1 : 2;
  rows[1].tensors = head_tables;
  rows[1].parameters = head_tables * in.config.vocab_size * in.config.hidden_size;
  for (const auto& [name, bytes] : in.tensor_bytes)
    rows[static_cast<size_t>(size_class(name))].input_bytes += bytes;
  for (const TensorToWrite& t : out)
    rows[static_cast<size_t>(size_class(t.name))].output_bytes += bytes_of(t);
  QuantizeSizes total{"total"};
  for (const QuantizeSizes& r : rows) {
    total.tensors += r.tensors;
    total.parameters += r.parameters;
    total.input_bytes += r.input_bytes;
  }
  total.output_bytes = file_bytes;
  rows.push_back(total);
  return rows;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  QLLM_CHECK(f.good(), "cannot write '{}'", path.string());
}

}  // namespace

DType quantize_scale_dtype(QuantFormat format) {
  return format == QuantFormat::Qllm ? DType::BF16 : DType::F16;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Every weight is checked before the first is quantized: a mode or shape the format cannot hold fails at once.
void check_formats(LlamaWeights& weights, const QuantizeOptions& o, const QuantizationConfig& q) {
  for (const LlamaWeights::Linear& l : weights.linears()) {
    const QuantMode& mode = l.head ? o.quant.lm_head : o.quant.linear;
    if (mode.kind != QuantMode::Kind::Int4) continue;
    Int4Scheme s = mode.int4;
    s.scale_dtype = q.scheme.scale_dtype;
    QLLM_CHECK(
        !l.head || same_stored_format(s, q.scheme),
        "--quant-lm-head {}: a checkpoint stores one INT4 format (quantization_config); the lm_head takes "
        "--quant's ({}) or stays 16-bit",
        mode.name(), o.quant.linear.name());
    check_storable(q, s, l.matrix->name, l.matrix->rows, l.matrix->cols);
  }
}

// model.safetensors, config.json and the tokenizer files.
std::vector<TensorToWrite> write_output(const Input& in, const QuantizeOptions& o,
                                        const QuantizationConfig& q) {
  const fs::path out(o.out_dir);
  fs::create_directories(out);
  std::vector<TensorToWrite> tensors = output_tensors(in, q, q.scheme.scale_dtype);
  write_safetensors((out / "model.safetensors").string(), tensors);
  json config = in.config_json;
  config["quantization_config"] = q.to_json();
  write_text(out / "config.json", config.dump(2) + "\n");
  if (in.gguf) {
    write_gguf_metadata((out / "tokenizer.gguf").string(), *in.gguf);
  } else {
    for (const char* name : kCopiedFiles) {
      const fs::path from = fs::path(o.model) / name;
      if (fs::exists(from)) fs::copy_file(from, out / name, fs::copy_options::overwrite_existing);
    }
  }
  return tensors;
}

}  // namespace

QuantizeReport quantize_checkpoint(const QuantizeOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  check_options(o);
  QuantizeReport report;
  const bool gpu = use_gpu(o.device, report.device);
  Input in = read_input(o.model, o.verbose);
  QuantizationConfig q;
  q.format = o.format;
  q.scheme = o.quant.linear.int4;
  q.scheme.scale_dtype = quantize_scale_dtype(o.format);  // also the activation dtype the output runs with
  check_formats(in.weights, o, q);
  report.read_seconds = seconds_since(start);

  const auto quantize_start = std::chrono::steady_clock::now();
  const DType activation = q.scheme.scale_dtype;
  if (o.gptq) {
    const Tokenizer tokenizer = in.gguf ? Tokenizer::from_gguf_vocab(read_gguf_vocab(*in.gguf))
                                        : Tokenizer::load(o.model);
    report.gptq_times =
        apply_gptq(in.config, in.weights, tokenizer, o.quant, activation, gpu, *o.gptq, o.verbose);
  }
  quantize_weights(in.weights, o.quant, activation, gpu, o.gptq.has_value(), o.verbose);
  report.quantize_seconds = seconds_since(quantize_start);
  report.quantization = stored_quant(in.weights).name();
  report.format = std::string(quant_format_name(o.format));

  const auto write_start = std::chrono::steady_clock::now();
  const std::vector<TensorToWrite> tensors = write_output(in, o, q);
  report.write_seconds = seconds_since(write_start);
  report.sizes = size_table(in, tensors, fs::file_size(fs::path(o.out_dir) / "model.safetensors"));
  report.seconds = seconds_since(start);
  return report;
}

}  // namespace qllm
