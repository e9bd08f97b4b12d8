#include "engine/load_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "core/file_io.h"
#include "core/gguf.h"
#include "core/json.h"
#include "kernels/runtime/device_info.h"
#include "model/gguf_model.h"
#include "model/llama_ref.h"
#include "model/prequantized.h"
#include "qllm/error.h"
#include "tokenizer/gguf_vocab.h"

#if QLLM_HAVE_CUDA
#include "model/llama_cuda.h"
#endif

namespace qllm {

namespace {

namespace fs = std::filesystem;

bool is_gguf_file(const std::string& path) {
  return fs::is_regular_file(path) && fs::path(path).extension() == ".gguf";
}

// The parts of a model before it goes to a device.
struct HostModel {
  LlamaConfig config;
  LlamaWeights weights;
  std::optional<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat_template;
  SamplingParams sampling_defaults;
};

// A tokenizer whose ids reach past the model's vocabulary would fail only when such an id is fed.
void check_tokenizer_fits(const Tokenizer& tokenizer, const LlamaConfig& config, const std::string& path) {
  QLLM_CHECK(
      static_cast<int64_t>(tokenizer.vocab_size()) <= config.vocab_size,
      "{}: the tokenizer defines ids up to {} but the model's vocab_size is {}: tokenizer and config do "
      "not belong together",
      path, tokenizer.vocab_size() - 1, config.vocab_size);
}

// The tokenizer and chat template of a GGUF file (a model, or the tokenizer.gguf that `qllm quantize` writes
// beside a checkpoint converted from one).
void read_gguf_tokenizer(const GgufFile& file, HostModel& host) {
  const GgufVocab vocab = read_gguf_vocab(file);
  host.tokenizer = Tokenizer::from_gguf_vocab(vocab);
  if (!file.contains("tokenizer.chat_template")) return;
  auto token_text = [&](std::optional<uint32_t> id) -> std::optional<std::string> {
    if (!id || *id >= vocab.tokens.size()) return std::nullopt;
    return vocab.tokens[*id];
  };
  host.chat_template =
      ChatTemplate::from_source(file.get_string("tokenizer.chat_template"), token_text(vocab.bos_id),
                                token_text(vocab.eos_id), file.name() + ": tokenizer.chat_template");
}

HostModel read_safetensors_model(const std::string& dir, const LoadOptions& options) {
  QLLM_CHECK(fs::is_directory(dir),
             "model '{}': expected a Hugging Face checkpoint directory or a .gguf file", dir);
  HostModel host{LlamaConfig::load(dir), {}, {}, {}, {}};
  const fs::path gguf_tokenizer = fs::path(dir) / "tokenizer.gguf";
  if (!fs::exists(fs::path(dir) / "tokenizer.json") && fs::exists(gguf_tokenizer)) {
    read_gguf_tokenizer(GgufFile::open(gguf_tokenizer.string()), host);
  } else {
    host.tokenizer = Tokenizer::load(dir);
    const fs::path config_file = fs::path(dir) / "tokenizer_config.json";
    const bool has_template =
        fs::exists(fs::path(dir) / "chat_template.jinja") ||
        (fs::exists(config_file) && read_json_file(config_file).contains("chat_template"));
    if (has_template) host.chat_template = ChatTemplate::load(dir);
  }
  host.sampling_defaults = read_generation_config(dir);
  check_tokenizer_fits(*host.tokenizer, host.config, dir);
  host.weights = LlamaWeights::load(dir, host.config, options.verbose);
  return host;
}

HostModel read_gguf_model(const std::string& path, const LoadOptions& options) {
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path));
  HostModel host{llama_config_from_gguf(*file), {}, {}, {}, {}};
  read_gguf_tokenizer(*file, host);
  check_tokenizer_fits(*host.tokenizer, host.config, path);
  host.weights = llama_weights_from_gguf(file, host.config, options.verbose);
  return host;
}

// The config's EOS ids, plus the end-of-turn markers of the common chat formats that the vocabulary has
// (Llama 3 <|eot_id|>, ChatML <|im_end|>, Phi-3 <|end|>, Gemma <end_of_turn>): a chat answer ends there.
std::vector<int32_t> stop_ids_of(const LlamaConfig& config, const Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  for (int64_t id : config.eos_token_ids) ids.push_back(static_cast<int32_t>(id));
  for (const char* marker : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"}) {
    if (const auto id = tokenizer.token_id(marker)) ids.push_back(*id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

bool cuda_usable() {
  return query_device().available;
}

}  // namespace

DeviceKind parse_device(std::string_view name) {
  if (name == "auto") return DeviceKind::Auto;
  if (name == "cpu") return DeviceKind::Cpu;
  if (name == "cuda") return DeviceKind::Cuda;
  fail("unknown device '{}' (expected auto, cpu or cuda)", name);
}

std::string_view device_kind_name(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::Auto:
      return "auto";
    case DeviceKind::Cpu:
      return "cpu";
    case DeviceKind::Cuda:
      return "cuda";
  }
  return "?";
}

LoadedModel load_model(const std::string& path, const LoadOptions& options) {
  QLLM_CHECK(fs::exists(path), "model '{}' not found (no such directory or file)", path);
  DeviceKind device = options.device;
  if (device == DeviceKind::Cuda) {
    const DeviceInfo info = query_device();
    QLLM_CHECK(info.available, "--device cuda: {}", info.reason);
  }
  if (device == DeviceKind::Auto) device = cuda_usable() ? DeviceKind::Cuda : DeviceKind::Cpu;

  HostModel host =
      is_gguf_file(path) ? read_gguf_model(path, options) : read_safetensors_model(path, options);
  std::vector<int32_t> stop_ids = stop_ids_of(host.config, *host.tokenizer);
  const ModelQuant quant = options.quant ? *options.quant : stored_quant(host.weights);
  if (options.gptq) {
    QLLM_CHECK(options.quant.has_value(),
               "a calibrated --method (gptq, awq, awq-gptq) needs an explicit INT4 --quant (not auto)");
    apply_gptq(host.config, host.weights, *host.tokenizer, quant, quant.activation_dtype(),
               device == DeviceKind::Cuda, *options.gptq, options.verbose);
  }
  std::unique_ptr<Model> model;
#if QLLM_HAVE_CUDA
  if (device == DeviceKind::Cuda) {
    model = std::make_unique<LlamaCudaModel>(std::move(host.config), host.weights, quant, options.verbose);
  }
#endif
  if (!model) {
    model = std::make_unique<LlamaRefModel>(std::move(host.config), std::move(host.weights), quant);
  }
  return LoadedModel{path,
                     std::move(model),
                     std::move(*host.tokenizer),
                     std::move(host.chat_template),
                     host.sampling_defaults,
                     std::move(stop_ids)};
}

std::vector<int32_t> LoadedModel::prompt_ids(std::string_view text) const {
  return tokenizer.encode(text, /*add_special_tokens=*/true);
}

std::vector<int32_t> LoadedModel::chat_ids(std::span<const ChatMessage> messages,
                                           bool add_generation_prompt) const {
  QLLM_CHECK(chat_template.has_value(),
             "{}: the model has no chat template (tokenizer_config.json, "
             "chat_template.jinja or the GGUF key tokenizer.chat_template)",
             path);
  // The rendered template carries its own BOS, as apply_chat_template(tokenize=True) encodes it.
  return tokenizer.encode(chat_template->render(messages, add_generation_prompt),
                          /*add_special_tokens=*/false);
}

SamplingParams read_generation_config(const std::string& dir) {
  SamplingParams p;
  const fs::path path = fs::path(dir) / "generation_config.json";
  if (!fs::exists(path)) return p;
  const nlohmann::json j = read_json_file(path);
  const std::string file = path.string();
  QLLM_CHECK(j.is_object(), "{}: must be a JSON object", file);
  // Absent or null fields take HF's defaults; a field of the wrong type is an error naming it.
  auto present = [&](const char* key) { return j.contains(key) && !j[key].is_null(); };
  auto number = [&](const char* key, double fallback) {
    if (!present(key)) return fallback;
    QLLM_CHECK(j[key].is_number(), "{}: '{}' must be a number, not {}", file, key, json_excerpt(j[key]));
    return j[key].get<double>();
  };
  p.repetition_penalty = static_cast<float>(number("repetition_penalty", 1.0));
  bool do_sample = false;
  if (present("do_sample")) {
    QLLM_CHECK(j["do_sample"].is_boolean(), "{}: 'do_sample' must be true or false, not {}", file,
               json_excerpt(j["do_sample"]));
    do_sample = j["do_sample"].get<bool>();
  }
  if (do_sample) {
    p.temperature = static_cast<float>(number("temperature", 1.0));
    p.top_p = static_cast<float>(number("top_p", 1.0));
    p.min_p = static_cast<float>(number("min_p", 0.0));
    if (present("top_k")) {
      QLLM_CHECK(j["top_k"].is_number_integer() && j["top_k"].get<int64_t>() >= 0,
                 "{}: 'top_k' must be a non-negative integer, not {}", file, json_excerpt(j["top_k"]));
      p.top_k = j["top_k"].get<int64_t>();
    } else {
      p.top_k = 50;
    }
  }
  try {
    p.validate();
  } catch (const Error& e) {
    fail("{}: {}", file, e.what());
  }
  return p;
}

}  // namespace qllm
