// GPTQ's calibration and solver options, shared by gptq-error and the model commands (--method gptq).
#include "qllm/error.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

void add_gptq_options(CLI::App& cmd, GptqCliOptions& o) {
  cmd.add_option("--calib", o.calib,
                 "GPTQ calibration text: self (sampled by the model from BOS) or a text file (not the "
                 "evaluation text)")
      ->capture_default_str();
  cmd.add_option("--calib-samples", o.samples, "GPTQ calibration windows")->capture_default_str();
  cmd.add_option("--calib-len", o.length, "tokens per calibration window")->capture_default_str();
  cmd.add_option("--calib-seed", o.seed, "seed of the windows' positions or sampling")
      ->check(kSeedValidator)
      ->capture_default_str();
  cmd.add_option("--gptq-damp", o.damp, "GPTQ dampening: this fraction of the mean Hessian diagonal")
      ->capture_default_str();
  cmd.add_flag(
      "--act-order,!--no-act-order", o.act_order,
      "GPTQ columns in order of decreasing Hessian diagonal, groups static so the layout stays "
      "(default; --no-act-order: the columns' own order, each group's scale from its updated weights)");
  cmd.add_flag("--clip-search", o.clip_search,
               "with gptq/awq/awq-gptq: clip each group where its rounding changes the layer's output on the "
               "calibration inputs least (AWQ's clip search; GPTQ then keeps the groups static)");
}

CalibrationOptions calibration_options(const GptqCliOptions& o) {
  return {.source = o.calib, .samples = o.samples, .length = o.length, .seed = o.seed};
}

std::optional<GptqLoadOptions> calibrated_method(const std::string& method, const GptqCliOptions& o) {
  QLLM_CHECK(method == "rtn" || method == "gptq" || method == "awq" || method == "awq-gptq",
             "--method must be rtn, gptq, awq or awq-gptq, got '{}'", method);
  QLLM_CHECK(
      method != "rtn" || !o.clip_search,
      "--clip-search chooses the clipping on calibration inputs: it needs --method gptq, awq or awq-gptq");
  if (method == "rtn") return std::nullopt;
  return GptqLoadOptions{.calib = calibration_options(o),
                         .gptq = gptq_options(o),
                         .awq = method.starts_with("awq"),
                         .solve = method.ends_with("gptq"),
                         .clip = o.clip_search};
}

GptqOptions gptq_options(const GptqCliOptions& o) {
  QLLM_CHECK(o.damp >= 0 && o.damp < 1, "--gptq-damp must be in [0, 1), got {}", o.damp);
  return {.percdamp = o.damp, .block_size = 128, .act_order = o.act_order};
}

}  // namespace qllm::cli
