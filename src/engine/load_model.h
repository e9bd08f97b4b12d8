// load_model: everything a tool or a server needs to run a model, read once from a Hugging Face checkpoint
// directory (config.json, safetensors, tokenizer.json, tokenizer_config.json / chat_template.jinja,
// generation_config.json) or a GGUF file (one file holds it all): the model on the chosen device in the
// chosen quantization, its tokenizer, chat template, sampling defaults and stop ids.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/gptq_model.h"
#include "model/sampler.h"
#include "model/causal_lm.h"
#include "qllm/tokenizer.h"
#include "quant/quant_mode.h"

namespace qllm {

enum class DeviceKind { Auto, Cpu, Cuda };
DeviceKind parse_device(std::string_view name);  // auto | cpu | cuda
std::string_view device_kind_name(DeviceKind kind);

struct LoadOptions {
  DeviceKind device = DeviceKind::Auto;  // Auto: the GPU when one is present and qllm was built with CUDA
  // The weight formats; none ("--quant auto"): as the checkpoint stores them (model/prequantized.h,
  // stored_quant): bf16 for a 16-bit checkpoint or a GGUF file, a pre-quantized checkpoint's INT4 as it is.
  // An explicit mode on a pre-quantized checkpoint keeps the weights whose INT4 format it names and
  // re-quantizes the others from their exact reconstruction.
  std::optional<ModelQuant> quant;
  // `--method gptq`: the decoder layers' INT4 by GPTQ (engine/gptq_model.h) instead of round to nearest.
  std::optional<GptqLoadOptions> gptq;
  bool verbose = true;  // progress on stderr
};

struct LoadedModel {
  std::string path;
  std::unique_ptr<Model> model;
  Tokenizer tokenizer;
  std::optional<ChatTemplate> chat_template;  // none when the model ships no template
  SamplingParams sampling_defaults;  // generation_config.json's, as transformers' generate() reads it
  std::vector<int32_t> stop_ids;     // generation ends after any of these

  // Token ids of a plain prompt (BOS as the tokenizer adds it) or of a chat rendered with the model's
  // template (which writes its own BOS); qllm::Error when the model has no chat template.
  std::vector<int32_t> prompt_ids(std::string_view text) const;
  std::vector<int32_t> chat_ids(std::span<const ChatMessage> messages,
                                bool add_generation_prompt = true) const;
};

LoadedModel load_model(const std::string& path, const LoadOptions& options);

// generation_config.json in `dir` read as Hugging Face's generate() reads it (greedy unless do_sample; then
// its temperature, top_p, top_k (default 50), min_p; repetition_penalty); defaults when the file is absent.
SamplingParams read_generation_config(const std::string& dir);

}  // namespace qllm
