// qllm perplexity: perplexity of a model on a text file (GPTQ/HF protocol: non-overlapping windows of
// --ctx tokens, every position but the first of each window scored).
#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <string>

#include "core/file_io.h"
#include "core/progress.h"
#include "core/table.h"
#include "engine/perplexity.h"
#include "model/llama_ref.h"
#include "qllm/error.h"
#include "qllm/tokenizer.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

namespace {

struct PerplexityCliOptions {
  std::string model;
  std::string file;
  int64_t ctx = 2048;
  bool ctx_given = false;  // the default shrinks to a smaller model's context; an explicit --ctx does not
  int64_t max_tokens = 0;
  std::string device = "cpu";
  bool json = false;
};

void run(PerplexityCliOptions o) {
  QLLM_CHECK(o.device == "cpu", "--device {}: not yet supported (only cpu, the reference engine, for now)",
             o.device);
  const LlamaConfig config = LlamaConfig::load(o.model);
  if (!o.ctx_given && o.ctx > config.max_position_embeddings) {
    o.ctx = config.max_position_embeddings;
    fmt::print(stderr, "--ctx not given: using the model's context of {} tokens\n", o.ctx);
  }
  QLLM_CHECK(o.ctx >= 2 && o.ctx <= config.max_position_embeddings,
             "--ctx {} must be in [2, {}] (max_position_embeddings of {})", o.ctx,
             config.max_position_embeddings, o.model);
  const std::string text = read_text_file(o.file);
  const Tokenizer tokenizer = Tokenizer::load(o.model);
  check_tokenizer_fits(tokenizer, config, o.model);
  auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> tokens = tokenizer.encode(text, /*add_special_tokens=*/false);
  fmt::print(stderr, "tokenized {} bytes into {} tokens in {:.1f} s\n", text.size(), tokens.size(),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());

  const auto model = LlamaRef::load(o.model, /*verbose=*/true);
  PerplexityOptions options;
  options.ctx = o.ctx;
  options.max_tokens = o.max_tokens;
  std::unique_ptr<Progress> progress;
  options.progress = [&](int64_t window, int64_t windows, double running) {
    if (!progress) progress = std::make_unique<Progress>("perplexity windows", windows, !o.json);
    progress->update(window, fmt::format("ppl {:.4f}", running));
    if (window == windows) progress->finish(fmt::format("ppl {:.4f}", running));
  };
  const PerplexityResult r = perplexity(*model, tokens, options);

  Table table(
      {"protocol", "ctx", "windows", "scored_tokens", "mean_nll", "perplexity", "tokens_per_s", "seconds"});
  table.add_row({r.protocol, r.ctx, r.windows, r.scored_tokens, Cell::number(r.mean_nll, 6),
                 Cell::number(r.perplexity, 4), Cell::number(r.tokens_per_second(), 1),
                 Cell::number(r.seconds, 2)});
  if (o.json) {
    const nlohmann::json out = {{"command", "perplexity"},
                                {"model", o.model},
                                {"file", o.file},
                                {"file_tokens", tokens.size()},
                                {"device", model->device_name()},
                                {"table", table.to_json()}};
    fmt::print("{}\n", out.dump(2));
    return;
  }
  fmt::print("perplexity of {} on {} ({} tokens), {}\n\n{}", o.model, o.file, tokens.size(),
             model->device_name(), table.to_text());
}

}  // namespace

void add_perplexity(CLI::App& app) {
  auto options = std::make_shared<PerplexityCliOptions>();
  CLI::App* cmd = app.add_subcommand("perplexity", "perplexity of a model on a text file (gptq-hf protocol)");
  cmd->add_option("--model", options->model, "Hugging Face checkpoint directory")->required();
  cmd->add_option("--file", options->file, "UTF-8 text, tokenized whole without special tokens")->required();
  auto* ctx = cmd->add_option("--ctx", options->ctx, "window length in tokens (at most the model's context)")
                  ->capture_default_str();
  cmd->add_option("--max-tokens", options->max_tokens, "use only the first N tokens of the file (0: all)")
      ->capture_default_str();
  cmd->add_option("--device", options->device, "cpu (the reference engine)")->capture_default_str();
  cmd->add_flag("--json", options->json, "print JSON instead of a table");
  cmd->callback([options, ctx] {
    options->ctx_given = ctx->count() > 0;
    run(*options);
  });
}

}  // namespace qllm::cli
