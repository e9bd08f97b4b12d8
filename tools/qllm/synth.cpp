// qllm synth: a random-weight checkpoint in the Hugging Face layout (Llama-3.2-1B's shapes or a tiny toy),
// for speed and memory work without the real weights and for tests.
#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <string>

#include "model/synthetic.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

void add_synth(CLI::App& app) {
  auto options = std::make_shared<SynthOptions>();
  CLI::App* cmd =
      app.add_subcommand("synth", "write a random-weight Llama checkpoint in Hugging Face format");
  cmd->add_option("--config", options->preset, "llama-3.2-1b, small (2 layers, hidden 192, head_dim 64) or tiny (2 layers, hidden 64)")->required();
  cmd->add_option("--out", options->out_dir, "output directory (created)")->required();
  cmd->add_option("--seed", options->seed, "seed of the N(0, 0.02^2) weights")
      ->check(kSeedValidator)
      ->capture_default_str();
  cmd->add_option("--tokenizer", options->tokenizer_dir,
                  "copy tokenizer.json, tokenizer_config.json (and chat_template.jinja) from this directory "
                  "instead of generating a byte-level tokenizer");
  cmd->add_flag("--force", options->force, "write into a non-empty --out directory");
  cmd->callback([options] {
    options->verbose = options->preset == "llama-3.2-1b";
    const auto start = std::chrono::steady_clock::now();
    const LlamaConfig config = write_synthetic_checkpoint(*options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    fmt::print("wrote {} ({}, seed {}) in {:.1f} s\n{}\n", options->out_dir, options->preset, options->seed,
               seconds, config.describe());
  });
}

}  // namespace qllm::cli
