// qllm quantize: a model quantized to INT4 once and written as a Hugging Face style checkpoint (qllm's own
// tensor layout, or GPTQ's / AWQ's that transformers, vLLM and AutoGPTQ/AutoAWQ read); engine/quantize_model.h.
#include <fmt/format.h>

#include <memory>
#include <string>

#include "core/table.h"
#include "engine/quantize_model.h"
#include "qllm/error.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

namespace {

struct QuantizeCliOptions {
  std::string model;
  std::string out;
  std::string quant = "int4-g128";
  std::string quant_lm_head = "auto";
  std::string format = "qllm";
  std::string device = "auto";
  std::string scale_search = "none";
  std::string method = "rtn";
  GptqCliOptions gptq;
  bool force = false;
  bool json = false;
};

double mib(uint64_t bytes) {
  return static_cast<double>(bytes) / 1048576.0;
}

void run(const QuantizeCliOptions& o) {
  QuantizeOptions options;
  options.model = o.model;
  options.out_dir = o.out;
  options.format = parse_quant_format(o.format);
  // auto: the lm_head quantized like the layers in qllm's format, 16-bit in gptq/awq (their loaders'
  // convention).
  std::string lm_head = o.quant_lm_head;
  if (lm_head == "auto") lm_head = options.format == QuantFormat::Qllm ? "same" : "bf16";
  options.quant = ModelQuant::parse(o.quant, lm_head);
  for (QuantMode* mode : {&options.quant.linear, &options.quant.lm_head})
    mode->int4.search = parse_scale_search(o.scale_search);
  options.device = parse_device(o.device);
  options.gptq = calibrated_method(o.method, o.gptq);
  options.force = o.force;
  options.verbose = !o.json;
  const QuantizeReport r = quantize_checkpoint(options);

  Table table({"weights", "tensors", "parameters", "input_MiB", "output_MiB", "compression"});
  for (const QuantizeSizes& s : r.sizes) {
    table.add_row({s.what, s.tensors, s.parameters, Cell::number(mib(s.input_bytes), 1),
                   Cell::number(mib(s.output_bytes), 1),
                   s.output_bytes ? Cell::number(static_cast<double>(s.input_bytes) / s.output_bytes, 3)
                                  : Cell::missing()});
  }
  if (o.json) {
    nlohmann::json out = {{"command", "quantize"},
                          {"model", o.model},
                          {"out", o.out},
                          {"quant", r.quantization},
                          {"format", r.format},
                          {"device", r.device},
                          {"seconds", r.seconds},
                          {"read_seconds", r.read_seconds},
                          {"quantize_seconds", r.quantize_seconds},
                          {"write_seconds", r.write_seconds},
                          {"table", table.to_json()}};
    if (r.gptq_times) {
      const GptqTimes& t = *r.gptq_times;
      out["gptq_seconds"] = {{"total", t.total},     {"sampling", t.sampling}, {"forward", t.forward},
                             {"hessian", t.hessian}, {"solve", t.solve},       {"awq", t.awq}};
    }
    fmt::print("{}\n", out.dump(2));
    return;
  }
  fmt::print("{}: {} ({} format) on {} in {:.1f} s (read {:.1f}, quantize {:.1f}, write {:.1f}) -> {}\n{}",
             o.model, r.quantization, r.format, r.device, r.seconds, r.read_seconds, r.quantize_seconds,
             r.write_seconds, o.out, table.to_text());
}

}  // namespace

void add_quantize(CLI::App& app) {
  auto o = std::make_shared<QuantizeCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "quantize",
      "quantize a model to INT4 once and write a Hugging Face style checkpoint (qllm, gptq or awq)");
  cmd->add_option("--model", o->model, "input: Hugging Face checkpoint directory or .gguf file")->required();
  cmd->add_option("--out", o->out, "output directory (created)")->required();
  cmd->add_option("--quant", o->quant, "int4-global, int4-rowwise, int4-g<N> or int4-g<N>-asym")
      ->capture_default_str();
  cmd->add_option(
         "--quant-lm-head", o->quant_lm_head,
         "the lm_head (and a tied embedding): auto (same in qllm format, bf16 in gptq/awq), same, or bf16 "
         "(kept 16-bit as the input stores it)")
      ->capture_default_str();
  cmd->add_option(
         "--format", o->format,
         "qllm (qllm's layout, docs/FORMATS.md), gptq (AutoGPTQ v1: f16 scales) or awq (AutoAWQ GEMM, "
         "int4-g<N>-asym only)")
      ->capture_default_str();
  cmd->add_option("--device", o->device,
                  "where the quantizer runs: auto (the GPU when there is one), cpu, cuda")
      ->capture_default_str();
  cmd->add_option("--scale-search", o->scale_search, "int4 scales: none (round to nearest), mse or mae")
      ->capture_default_str();
  cmd->add_option("--method", o->method, kMethodHelp)->capture_default_str();
  add_gptq_options(*cmd, o->gptq);
  cmd->add_flag("--force", o->force, "write into a non-empty --out directory");
  cmd->add_flag("--json", o->json, "print JSON instead of a table");
  cmd->callback([o] { run(*o); });
}

}  // namespace qllm::cli
