// Each subcommand lives in its own file (tools/qllm/<name>.cpp, picked up by CMake) and registers itself on
// the CLI11 app through one add_<name>() function declared here and called from main.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "engine/calibration.h"
#include "engine/load_model.h"
#include "quant/gptq_ref.h"

namespace qllm::cli {

void add_quant_error(CLI::App& app);
void add_gemm_bench(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_synth(CLI::App& app);
void add_generate(CLI::App& app);
void add_perplexity(CLI::App& app);
void add_chat(CLI::App& app);
void add_bench(CLI::App& app);
void add_quantize(CLI::App& app);
void add_serve(CLI::App& app);  // built with QLLM_SERVER (cpp-httplib)
void add_gptq_error(CLI::App& app);

// A 64-bit seed: a whole number from 0 to 2^64 - 1 (CLI11's NonNegativeNumber would let "1.5" through and
// word a "-1" with a 300-digit bound).
inline const CLI::Validator kSeedValidator(
    [](const std::string& text) -> std::string {
      const bool digits =
          !text.empty() && text.size() <= 20 && text.find_first_not_of("0123456789") == std::string::npos;
      if (digits && (text.size() < 20 || text <= "18446744073709551615")) return {};
      return "'" + text.substr(0, 40) + "' is not a seed (a whole number from 0 to 18446744073709551615)";
    },
    "SEED");

// GPTQ's calibration and solver options (--calib, --calib-samples, --calib-len, --calib-seed, --gptq-damp,
// --act-order / --no-act-order), for gptq-error and --method gptq.
struct GptqCliOptions {
  std::string calib = "self";
  int64_t samples = 16;
  int64_t length = 512;
  uint64_t seed = 0;
  double damp = 0.01;
  // On by default: on SmolLM2-135M-Instruct it is what makes GPTQ beat round to nearest (docs/RESULTS.md
  // §10: in quantization order GPTQ gains almost nothing there, in qllm and in a textbook torch GPTQ alike).
  bool act_order = true;
  bool clip_search = false;  // output-aware clipping of every group (quant/clip_search_ref.h)
};
void add_gptq_options(CLI::App& cmd, GptqCliOptions& options);
// --method: rtn (nullopt: no calibration), gptq, awq (AWQ-style scaling, then round to nearest) or awq-gptq.
inline constexpr const char* kMethodHelp =
    "INT4 quantizer: rtn (round to nearest), gptq (calibrated layer by layer), awq (activation-aware input "
    "scaling, then round to nearest) or awq-gptq (both); docs/GPTQ.md";
std::optional<GptqLoadOptions> calibrated_method(const std::string& method, const GptqCliOptions& options);
CalibrationOptions calibration_options(const GptqCliOptions& options);
GptqOptions gptq_options(const GptqCliOptions& options);

// The options of every subcommand that runs a model: --model, --device, --quant, --quant-lm-head,
// --int8-threshold, --scale-search (parsed once, here, for all of them).
struct ModelCliOptions {
  std::string model;
  std::string device = "auto";
  std::string quant = "auto";
  std::string quant_lm_head = "same";
  float int8_threshold = kDefaultOutlierThreshold;
  std::string scale_search = "none";
  std::string method = "rtn";  // rtn | gptq (with `gptq`'s calibration)
  GptqCliOptions gptq;
};
void add_model_options(CLI::App& cmd, ModelCliOptions& options);

// Loads the model as the options say; progress on stderr unless `quiet`.
LoadedModel load_model_from(const ModelCliOptions& options, bool quiet = false);

}  // namespace qllm::cli
