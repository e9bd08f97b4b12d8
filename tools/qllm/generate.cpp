// qllm generate: text from a prompt (or a chat turn), streamed as it is produced, with prefill and
// decode speed reported at the end.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <string>

#include "core/file_io.h"
#include "core/table.h"
#include "engine/generate.h"
#include "qllm/error.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

namespace {

struct GenerateCliOptions {
  ModelCliOptions model;
  std::string prompt;
  std::string prompt_file;
  bool chat = false;
  std::string system;
  int64_t max_tokens = 128;
  int64_t ctx = 0;
  SamplingParams sampling;
  bool json = false;
};

std::vector<int32_t> prompt_ids(const GenerateCliOptions& o, const LoadedModel& m) {
  if (!o.chat) {
    QLLM_CHECK(o.system.empty(), "--system needs --chat");
    return m.prompt_ids(o.prompt);
  }
  std::vector<ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  messages.push_back({"user", o.prompt});
  return m.chat_ids(messages);
}

void print_stats(const GenerateResult& r, const std::string& device) {
  Table table({"phase", "tokens", "seconds", "tokens_per_s"});
  table.add_row({"prefill", r.prompt_tokens, Cell::number(r.prefill_seconds, 3),
                 Cell::number(r.prefill_tokens_per_second(), 1)});
  table.add_row({"decode", r.decode_steps, Cell::number(r.decode_seconds, 3),
                 Cell::number(r.decode_tokens_per_second(), 1)});
  fmt::print(stderr, "\n{} generated tokens, stopped by {}; {}\n{}", r.tokens.size(), r.stop_reason, device,
             table.to_text());
}

void run(GenerateCliOptions o, const CLI::App& cmd) {
  QLLM_CHECK(o.max_tokens > 0, "--max-tokens must be positive, got {}", o.max_tokens);
  if (!o.prompt_file.empty()) o.prompt = read_text_file(o.prompt_file);
  o.sampling.validate();
  const LoadedModel m = load_model_from(o.model, o.json);
  // Flags given on the command line win over generation_config.json.
  if (cmd.count("--temperature") == 0) o.sampling.temperature = m.sampling_defaults.temperature;
  if (cmd.count("--top-k") == 0) o.sampling.top_k = m.sampling_defaults.top_k;
  if (cmd.count("--top-p") == 0) o.sampling.top_p = m.sampling_defaults.top_p;
  if (cmd.count("--min-p") == 0) o.sampling.min_p = m.sampling_defaults.min_p;
  if (cmd.count("--repetition-penalty") == 0)
    o.sampling.repetition_penalty = m.sampling_defaults.repetition_penalty;
  if (o.sampling.greedy() && cmd.count("--top-k") + cmd.count("--top-p") + cmd.count("--min-p") > 0) {
    fmt::print(stderr,
               "note: --top-k, --top-p and --min-p do nothing with greedy decoding (temperature 0; the "
               "model's generation_config.json does not sample): pass --temperature to sample\n");
  }

  std::vector<int32_t> prompt;
  try {
    prompt = prompt_ids(o, m);
  } catch (const Error& e) {
    if (o.prompt_file.empty()) throw;
    fail("--prompt-file {}: {}", o.prompt_file, e.what());
  }
  const LlamaConfig& config = m.model->config();
  const int64_t ctx = o.ctx > 0 ? o.ctx
                                : std::min<int64_t>(config.max_position_embeddings,
                                                    static_cast<int64_t>(prompt.size()) + o.max_tokens);
  QLLM_CHECK(static_cast<int64_t>(prompt.size()) < ctx,
             "prompt of {} tokens does not fit in the context of {} positions ({})", prompt.size(), ctx,
             o.ctx > 0 ? "--ctx" : "max_position_embeddings");
  const int64_t room = ctx - static_cast<int64_t>(prompt.size()) + 1;
  if (o.max_tokens > room) {
    fmt::print(stderr,
               "note: --max-tokens {} capped to {}: the prompt's {} tokens leave that much of the {} "
               "positions of the context\n",
               o.max_tokens, room, prompt.size(), ctx);
  }
  const auto context = m.model->new_context({.max_sequences = 1, .max_positions = ctx});

  GenerateOptions options;
  options.max_new_tokens = o.max_tokens;
  options.sampling = o.sampling;
  options.stop_ids = m.stop_ids;
  if (!o.json) fmt::print(stderr, "{} prompt tokens, sampling: {}\n", prompt.size(), o.sampling.describe());

  Tokenizer::StreamDecoder stream(m.tokenizer, /*skip_special_tokens=*/true);
  const GenerateResult r = generate(*context, 0, prompt, options, [&](int32_t token) {
    if (o.json) return;
    fmt::print("{}", stream.push(token));
    std::fflush(stdout);
  });
  if (!o.json) {
    fmt::print("{}\n", stream.flush());
    print_stats(r, m.model->device_name());
    return;
  }
  const nlohmann::json out = {{"command", "generate"},
                              {"model", o.model.model},
                              {"device", m.model->device_name()},
                              {"quant", m.model->quantization()},
                              {"sampling", o.sampling.describe()},
                              {"prompt_ids", prompt},
                              {"tokens", r.tokens},
                              {"text", m.tokenizer.decode(r.tokens, /*skip_special_tokens=*/true)},
                              {"stop_reason", r.stop_reason},
                              {"prompt_tokens", r.prompt_tokens},
                              {"prefill_seconds", r.prefill_seconds},
                              {"prefill_tokens_per_s", r.prefill_tokens_per_second()},
                              {"decode_steps", r.decode_steps},
                              {"decode_seconds", r.decode_seconds},
                              {"decode_tokens_per_s", r.decode_tokens_per_second()}};
  fmt::print("{}\n", out.dump(2));
}

}  // namespace

void add_generate(CLI::App& app) {
  auto options = std::make_shared<GenerateCliOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "generate text from a prompt");
  add_model_options(*cmd, options->model);
  auto* prompt = cmd->add_option("--prompt", options->prompt, "the prompt (or the user message with --chat)");
  cmd->add_option("--prompt-file", options->prompt_file, "read the prompt from this UTF-8 file instead")
      ->excludes(prompt);
  cmd->add_flag("--chat", options->chat, "render the prompt as a user turn with the model's chat template");
  cmd->add_option("--system", options->system, "system message (with --chat)");
  cmd->add_option("--max-tokens", options->max_tokens, "new tokens at most")->capture_default_str();
  cmd->add_option("--ctx", options->ctx,
                  "context positions (default: prompt + max tokens, at most the model's)");
  cmd->add_option("--temperature", options->sampling.temperature, "0: greedy");
  cmd->add_option("--top-k", options->sampling.top_k, "0: off");
  cmd->add_option("--top-p", options->sampling.top_p, "1: off");
  cmd->add_option("--min-p", options->sampling.min_p, "0: off");
  cmd->add_option("--repetition-penalty", options->sampling.repetition_penalty, "1: off");
  cmd->add_option("--seed", options->sampling.seed, "sampling seed")
      ->check(kSeedValidator)
      ->capture_default_str();
  cmd->add_flag("--json", options->json, "print one JSON object at the end instead of streaming");
  cmd->footer(
      "Sampling options not given take the model's generation_config.json values, as HF generate() does.");
  cmd->callback([options, prompt, cmd] {
    if (prompt->count() == 0 && options->prompt_file.empty()) {
      throw CLI::RequiredError("--prompt or --prompt-file");
    }
    run(*options, *cmd);
  });
}

}  // namespace qllm::cli
