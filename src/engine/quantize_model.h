// `qllm quantize`: a model (Hugging Face safetensors directory or GGUF file) quantized to INT4 once and written
// as a Hugging Face style checkpoint directory that qllm (and, in the gptq/awq formats, transformers, vLLM and
// AutoGPTQ/AutoAWQ) loads: model.safetensors, config.json with its quantization_config, and the tokenizer
// files (a GGUF input's tokenizer metadata as tokenizer.gguf). The weights are quantized exactly as the engines
// quantize at load (model/prequantized.h), on the GPU when there is one (the CUDA quantizer gives the CPU
// reference's bits), so loading the output as stored gives the logits of quantizing at load.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/load_model.h"
#include "model/quantized_checkpoint.h"
#include "quant/quant_mode.h"

namespace qllm {

struct QuantizeOptions {
  std::string model;    // input: checkpoint directory or .gguf file
  std::string out_dir;  // output directory (created; an existing non-empty one needs `force`)
  // linear: an INT4 mode; lm_head: the same INT4 mode, another INT4 mode, or bf16/f16 (kept 16-bit). gptq and
  // awq keep the lm_head 16-bit (their loaders quantize the decoder layers only).
  ModelQuant quant = ModelQuant::parse("int4-g128");
  QuantFormat format = QuantFormat::Qllm;
  DeviceKind device = DeviceKind::Auto;  // where the quantizer runs (auto: the GPU when there is one)
  bool force = false;
  bool verbose = true;  // progress on stderr
  // `--method gptq`: the decoder layers by GPTQ (engine/gptq_model.h), calibrated on the same device.
  std::optional<GptqLoadOptions> gptq;
};

// Sizes of one class of tensors in the input and the output.
struct QuantizeSizes {
  std::string what;  // "linear layers", "lm_head + embedding", "norms", "total"
  int64_t tensors = 0;
  int64_t parameters = 0;
  uint64_t input_bytes = 0;   // as stored in the input (GGUF: the file's tensor bytes)
  uint64_t output_bytes = 0;  // as stored in model.safetensors (the total: the file's size)
};

struct QuantizeReport {
  std::string quantization;  // ModelQuant::name() as it will load ("int4-g128, lm_head bf16")
  std::string format;        // qllm | gptq | awq
  std::string device;        // where the quantizer ran
  std::vector<QuantizeSizes> sizes;
  double seconds = 0;       // end to end: read, quantize, write
  double read_seconds = 0;  // the input read and checked (safetensors: mapped, NaN/Inf scan)
  double quantize_seconds = 0;
  std::optional<GptqTimes> gptq_times;  // with --method gptq/awq: where the calibrated pass spent its time
  double write_seconds = 0;  // model.safetensors (GPTQ/AWQ words packed here), config.json, tokenizer
};

// The activation dtype the output runs with: the scales' dtype (bf16 for qllm, f16 for gptq and awq).
DType quantize_scale_dtype(QuantFormat format);

QuantizeReport quantize_checkpoint(const QuantizeOptions& options);

}  // namespace qllm
