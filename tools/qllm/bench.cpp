// qllm bench: prefill and decode throughput of a model per quantization mode and batch size, in
// llama-bench's terms (pp<N>, tg<N>; engine/bench.h), with the weight and context memory of each mode.
#include <fmt/format.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/table.h"
#include "engine/bench.h"
#include "model/synthetic.h"
#include "qllm/error.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

namespace {

struct BenchCliOptions {
  ModelCliOptions model;
  std::string synthetic;  // a synth preset instead of --model
  std::vector<std::string> quants = {"auto"};  // auto: as stored (bf16 for a 16-bit checkpoint)
  std::vector<int64_t> prompt = {512};
  std::vector<int64_t> generate = {128};
  std::vector<int> batch = {1};
  int reps = 3;
  bool json = false;
};

std::string today() {
  const std::time_t now = std::time(nullptr);
  char text[16];
  std::strftime(text, sizeof text, "%Y-%m-%d", std::gmtime(&now));
  return text;
}

// A synthetic checkpoint written once into a temporary folder, removed at exit.
class SyntheticModelDir {
 public:
  explicit SyntheticModelDir(const std::string& preset) {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("qllm-bench-{}-{}", preset, ::getpid());
    write_synthetic_checkpoint({.preset = preset, .out_dir = dir_.string(), .seed = 1, .verbose = true});
  }
  ~SyntheticModelDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string path() const { return dir_.string(); }

 private:
  std::filesystem::path dir_;
};

void run(BenchCliOptions o) {
  QLLM_CHECK(o.model.model.empty() != o.synthetic.empty(), "give exactly one of --model and --synthetic");
  for (int64_t p : o.prompt) QLLM_CHECK(p >= 1, "-p: prompt lengths must be >= 1, got {}", p);
  for (int64_t n : o.generate) QLLM_CHECK(n >= 1, "-n: generation lengths must be >= 1, got {}", n);
  for (int b : o.batch) QLLM_CHECK(b >= 1, "--batch: batch sizes must be >= 1, got {}", b);
  QLLM_CHECK(o.reps >= 1, "--reps must be >= 1, got {}", o.reps);
  std::unique_ptr<SyntheticModelDir> synthetic;
  if (!o.synthetic.empty()) {
    synthetic = std::make_unique<SyntheticModelDir>(o.synthetic);
    o.model.model = synthetic->path();
  }
  const int64_t max_prompt = *std::max_element(o.prompt.begin(), o.prompt.end());
  const int64_t max_new = *std::max_element(o.generate.begin(), o.generate.end());
  const int max_batch = *std::max_element(o.batch.begin(), o.batch.end());

  Table table(
      {"model", "quant", "device", "weights_MiB", "context_MiB", "test", "batch", "tokens_per_s", "stddev"});
  std::string device;
  for (const std::string& quant : o.quants) {
    ModelCliOptions mo = o.model;
    mo.quant = quant;
    const LoadedModel m = load_model_from(mo, o.json);
    device = m.model->device_name();
    const auto context = m.model->new_context({.max_sequences = max_batch,
                                               .max_positions = std::max(max_prompt, max_new + 1),
                                               .max_batch_tokens = 2048});
    auto add = [&](const ThroughputResult& r) {
      table.add_row({o.synthetic.empty() ? o.model.model : "synthetic " + o.synthetic,
                     m.model->quantization(), device, Cell::number(m.model->weight_bytes() / 1048576.0, 1),
                     Cell::number(context->memory_bytes() / 1048576.0, 1), r.test, r.batch,
                     Cell::number(r.mean(), 1), Cell::number(r.stddev(), 1)});
      if (!o.json)
        fmt::print(stderr, "{} {} batch {}: {:.1f} +/- {:.1f} tokens/s\n", quant, r.test, r.batch, r.mean(),
                   r.stddev());
    };
    for (int b : o.batch) {
      for (int64_t p : o.prompt) add(bench_prefill(*context, p, b, o.reps));
      for (int64_t n : o.generate) add(bench_decode(*context, n, b, o.reps));
    }
  }
  if (o.json) {
    const nlohmann::json out = {{"command", "bench"},
                                {"device", device},
                                {"date", today()},
                                {"reps", o.reps},
                                {"table", table.to_json()}};
    fmt::print("{}\n", out.dump(2));
    return;
  }
  fmt::print("{}, {}, mean +/- stddev of {} repetitions\n\n{}", device, today(), o.reps, table.to_text());
}

}  // namespace

void add_bench(CLI::App& app) {
  auto options = std::make_shared<BenchCliOptions>();
  CLI::App* cmd =
      app.add_subcommand("bench", "prefill and decode tokens/s per quantization mode (llama-bench style)");
  add_model_options(*cmd, options->model);
  cmd->get_option("--model")->required(false);
  cmd->add_option("--synthetic", options->synthetic,
                  "a random-weight model of this synth preset instead of --model "
                  "(llama-3.2-1b, small, tiny)");
  cmd->remove_option(cmd->get_option("--quant"));  // a list here: one run per mode
  cmd->add_option("--quant", options->quants,
                  "modes to measure, comma separated (auto: as the checkpoint stores them, bf16, int4-g128, int8, ...)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("-p,--prompt", options->prompt, "prompt lengths (pp), comma separated")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("-n,--gen", options->generate, "generated tokens (tg), comma separated")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--batch", options->batch, "sequences at once, comma separated")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--reps", options->reps, "repetitions (after one warm-up)")->capture_default_str();
  cmd->add_flag("--json", options->json, "print JSON instead of a table");
  cmd->callback([options] { run(*options); });
}

}  // namespace qllm::cli
