// qllm gptq-error: per linear layer of a model, the weight error (MAE) and the output error on calibration
// inputs of round to nearest beside GPTQ, so that a reader sees that a lower weight error is not what keeps
// the model (GPTQ usually raises the MAE while it lowers the output error). docs/GPTQ.md.
#include <fmt/format.h>

#include <memory>
#include <string>

#include "core/progress.h"
#include "core/table.h"
#include "engine/calibration.h"
#include "engine/gptq_model.h"
#include "model/llama_ref.h"
#include "qllm/error.h"
#include "tools/qllm/commands.h"

#if QLLM_HAVE_CUDA
#include "kernels/gptq/gptq_cuda.h"
#endif

namespace qllm::cli {

namespace {

struct GptqErrorOptions {
  std::string model;
  std::string quant = "int4-g128";
  std::string solver = "cpu";
  GptqCliOptions gptq;
  int64_t layers = -1;
  bool json = false;
};

void run(const GptqErrorOptions& o) {
  const QuantMode mode = QuantMode::parse(o.quant);
  QLLM_CHECK(mode.kind == QuantMode::Kind::Int4, "--quant {}: GPTQ quantizes to INT4 modes only", o.quant);
  LoadOptions load;
  load.device = DeviceKind::Cpu;
  load.verbose = !o.json;
  const LoadedModel m = load_model(o.model, load);  // bf16 reference: the model the windows are sampled from
  const auto& ref = dynamic_cast<const LlamaRefModel&>(*m.model);
  const auto windows = calibration_windows(*m.model, m.tokenizer, calibration_options(o.gptq));
  std::unique_ptr<GptqSolver> solver;
  std::unique_ptr<CalibrationMath> math;  // null: the CPU reference math
  if (o.solver == "cuda") {
#if QLLM_HAVE_CUDA
    solver = std::make_unique<GptqSolverCuda>();
    math = cuda_calibration_math();
#else
    fail("--solver cuda: this qllm was built without CUDA");
#endif
  } else {
    QLLM_CHECK(o.solver == "cpu", "--solver must be cpu or cuda, got '{}'", o.solver);
    solver = std::make_unique<GptqSolverRef>();
  }
  GptqModelOptions options;
  options.scheme = mode.int4;
  options.gptq = gptq_options(o.gptq);
  options.activation = DType::BF16;
  options.report = true;
  options.math = math.get();
  options.max_layers = o.layers;
  Progress progress("gptq layers", o.layers >= 0 ? o.layers : ref.config().num_hidden_layers, !o.json);
  options.progress = [&](int64_t layer, int64_t) { progress.update(layer); };
  const GptqModelResult r = gptq_quantize_model(ref.config(), ref.weights(), windows, *solver, options);
  progress.finish(fmt::format("{:.1f} s", r.seconds));

  Table table(
      {"layer", "shape", "rtn_mae", "gptq_mae", "rtn_output_err", "gptq_output_err", "output_err_ratio"});
  for (const GptqLinearReport& l : r.report) {
    table.add_row({l.name, fmt::format("{}x{}", l.rows, l.cols), Cell::number(l.rtn_mae, 6),
                   Cell::number(l.gptq_mae, 6), Cell::number(l.rtn_output_error, 5),
                   Cell::number(l.gptq_output_error, 5),
                   Cell::number(l.rtn_output_error > 0 ? l.gptq_output_error / l.rtn_output_error : 0, 3)});
  }
  if (o.json) {
    const nlohmann::json out = {{"command", "gptq-error"},
                                {"model", o.model},
                                {"quant", o.quant},
                                {"solver", solver->name()},
                                {"calib", o.gptq.calib},
                                {"calibration_tokens", r.calibration_tokens},
                                {"act_order", o.gptq.act_order},
                                {"seconds", r.seconds},
                                {"table", table.to_json()}};
    fmt::print("{}\n", out.dump(2));
    return;
  }
  fmt::print(
      "GPTQ vs round to nearest, {} on {} ({} calibration tokens from {}, {} solver, {:.1f} s)\n"
      "output_err: ||X (W - W')^T|| / ||X W^T|| on each layer's calibration inputs\n\n{}",
      o.quant, o.model, r.calibration_tokens, o.gptq.calib, solver->name(), r.seconds, table.to_text());
}

}  // namespace

void add_gptq_error(CLI::App& app) {
  auto options = std::make_shared<GptqErrorOptions>();
  CLI::App* cmd = app.add_subcommand(
      "gptq-error", "per-layer weight and output error of round to nearest vs GPTQ on calibration inputs");
  cmd->add_option("--model", options->model, "Hugging Face checkpoint directory or .gguf file")->required();
  cmd->add_option("--quant", options->quant,
                  "INT4 mode: int4-global, int4-rowwise, int4-g<N>, int4-g<N>-asym")
      ->capture_default_str();
  cmd->add_option("--solver", options->solver,
                  "cpu (reference, OpenMP) or cuda (the solver and the calibration products on the GPU)")
      ->capture_default_str();
  add_gptq_options(*cmd, options->gptq);
  cmd->add_option("--layers", options->layers, "only the first N decoder layers (-1: all)")
      ->capture_default_str();
  cmd->add_flag("--json", options->json, "print JSON instead of a table");
  cmd->callback([options] { run(*options); });
}

}  // namespace qllm::cli
