// qllm perplexity: perplexity of a model on a text file, in the Hugging Face (GPTQ) protocol or
// llama-perplexity's (engine/perplexity.h), with windows batched on the GPU.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "core/file_io.h"
#include "core/progress.h"
#include "core/table.h"
#include "engine/perplexity.h"
#include "qllm/error.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

namespace {

struct PerplexityCliOptions {
  ModelCliOptions model;
  std::string file;
  std::string protocol = "hf";
  int64_t ctx = 0;  // 0: 2048 (hf) or 512 (llama.cpp), at most the model's context
  int64_t chunks = 0;
  int64_t batch = 0;  // windows per forward pass (0: 1 on the CPU, 16 on a GPU)
  bool json = false;
};

void run(PerplexityCliOptions o) {
  const PerplexityProtocol protocol = parse_perplexity_protocol(o.protocol);
  QLLM_CHECK(o.chunks >= 0, "--chunks must be >= 0, got {}", o.chunks);
  QLLM_CHECK(o.batch >= 0, "--batch must be >= 0, got {}", o.batch);
  const std::string text = read_text_file(o.file);
  if (o.model.method == "gptq" && o.model.gptq.calib != "self") {
    std::error_code ec;
    QLLM_CHECK(!std::filesystem::equivalent(o.model.gptq.calib, o.file, ec),
               "--calib {} is the --file being evaluated: calibrating on the evaluation text would flatter "
               "the result",
               o.model.gptq.calib);
  }
  const LoadedModel m = load_model_from(o.model, o.json);
  const LlamaConfig& config = m.model->config();
  if (o.ctx == 0) {
    o.ctx =
        std::min<int64_t>(protocol == PerplexityProtocol::Hf ? 2048 : 512, config.max_position_embeddings);
  }
  QLLM_CHECK(o.ctx >= 4 && o.ctx <= config.max_position_embeddings,
             "--ctx {} must be in [4, {}] (max_position_embeddings of {})", o.ctx,
             config.max_position_embeddings, o.model.model);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> tokens = perplexity_tokens(m.tokenizer, text, protocol);
  if (!o.json) {
    fmt::print(stderr, "tokenized {} bytes into {} tokens in {:.1f} s\n", text.size(), tokens.size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const bool gpu = m.model->device_name().find("cpu") != 0;
  const int64_t batch = o.batch > 0 ? o.batch : (gpu ? 16 : 1);
  const auto context = m.model->new_context({.max_sequences = static_cast<int>(batch),
                                             .max_positions = o.ctx,
                                             .max_batch_tokens = std::max<int64_t>(512, batch * o.ctx)});

  PerplexityOptions options;
  options.protocol = protocol;
  options.ctx = o.ctx;
  options.max_windows = o.chunks;
  // llama-perplexity puts BOS first in each chunk when the tokenizer adds one.
  const std::vector<int32_t> probe = m.tokenizer.encode("a", /*add_special_tokens=*/true);
  if (m.tokenizer.bos_id() && !probe.empty() && probe.front() == *m.tokenizer.bos_id())
    options.bos = m.tokenizer.bos_id();
  std::unique_ptr<Progress> progress;
  options.progress = [&](int64_t window, int64_t windows, double running) {
    if (!progress) progress = std::make_unique<Progress>("perplexity windows", windows, !o.json);
    progress->update(window, fmt::format("ppl {:.4f}", running));
    if (window == windows) progress->finish(fmt::format("ppl {:.4f}", running));
  };
  const PerplexityResult r = perplexity(*context, tokens, options);

  Table table({"protocol", "ctx", "windows", "scored_tokens", "mean_nll", "perplexity", "error",
               "tokens_per_s", "seconds"});
  table.add_row({r.protocol, r.ctx, r.windows, r.scored_tokens, Cell::number(r.mean_nll, 6),
                 Cell::number(r.perplexity, 4), Cell::number(r.perplexity_error, 4),
                 Cell::number(r.tokens_per_second(), 1), Cell::number(r.seconds, 2)});
  if (o.json) {
    const nlohmann::json out = {{"command", "perplexity"},
                                {"model", o.model.model},
                                {"file", o.file},
                                {"file_tokens", tokens.size()},
                                {"device", m.model->device_name()},
                                {"quant", m.model->quantization()},
                                {"table", table.to_json()}};
    fmt::print("{}\n", out.dump(2));
    return;
  }
  fmt::print(
      "perplexity of {} ({}) on {} ({} tokens), {}\nPPL = {:.4f} +/- {:.4f} ({} protocol, ctx {})\n\n{}",
      o.model.model, m.model->quantization(), o.file, tokens.size(), m.model->device_name(), r.perplexity,
      r.perplexity_error, r.protocol, r.ctx, table.to_text());
}

}  // namespace

void add_perplexity(CLI::App& app) {
  auto options = std::make_shared<PerplexityCliOptions>();
  CLI::App* cmd = app.add_subcommand("perplexity", "perplexity of a model on a text file (WikiText-2)");
  add_model_options(*cmd, options->model);
  cmd->add_option("--file", options->file, "UTF-8 text, tokenized whole")->required();
  cmd->add_option("--protocol", options->protocol, "hf (GPTQ/transformers style) or llama.cpp")
      ->capture_default_str();
  cmd->add_option("--ctx", options->ctx, "window length in tokens (default 2048 for hf, 512 for llama.cpp)");
  cmd->add_option("--chunks", options->chunks, "score only the first N windows (0: all)")
      ->capture_default_str();
  cmd->add_option("--batch", options->batch, "windows per forward pass (default: 1 on the CPU, 16 on a GPU)");
  cmd->add_flag("--json", options->json, "print JSON instead of a table");
  cmd->callback([options] { run(*options); });
}

}  // namespace qllm::cli
