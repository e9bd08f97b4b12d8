// qllm chat: an interactive multi-turn chat with the model's chat template, answers streamed as they are
// generated. Each turn re-renders the whole conversation (as a chat template requires) and feeds only what
// the KV cache does not hold yet. Ends at end of input or on the line "/exit"; "/reset" starts over.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "core/progress.h"
#include "engine/generate.h"
#include "qllm/error.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

namespace {

struct ChatCliOptions {
  ModelCliOptions model;
  std::string system;
  int64_t max_tokens = 512;
  int64_t ctx = 4096;
  SamplingParams sampling;
};

void run(ChatCliOptions o, const CLI::App& cmd) {
  const LoadedModel m = load_model_from(o.model);
  QLLM_CHECK(m.chat_template.has_value(), "{}: the model has no chat template: use qllm generate",
             o.model.model);
  if (cmd.count("--temperature") == 0) {
    const uint64_t seed = o.sampling.seed;
    o.sampling = m.sampling_defaults;
    o.sampling.seed = seed;
  }
  o.sampling.validate();
  const int64_t ctx = std::min(o.ctx, m.model->config().max_position_embeddings);
  const auto context = m.model->new_context({.max_sequences = 1, .max_positions = ctx});
  const bool terminal = Progress::stderr_is_terminal();
  fmt::print(stderr,
             "chat with {} ({} positions of context; /reset starts over, /exit or end of input ends)\n",
             o.model.model, ctx);

  std::vector<ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  std::vector<int32_t> cached;  // the tokens the context holds for the conversation
  std::string line;
  while (true) {
    if (terminal) fmt::print(stderr, "\n> ");
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line == "/reset") {
      messages.resize(o.system.empty() ? 0 : 1);
      cached.clear();
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({"user", line});
    const std::vector<int32_t> prompt = m.chat_ids(messages);
    if (static_cast<int64_t>(prompt.size()) >= ctx) {
      fmt::print(stderr,
                 "the conversation ({} tokens) no longer fits in the context of {}: /reset to go on\n",
                 prompt.size(), ctx);
      messages.pop_back();
      continue;
    }
    const auto common =
        std::mismatch(cached.begin(), cached.end(), prompt.begin(), prompt.end()).first - cached.begin();
    GenerateOptions options{.max_new_tokens = o.max_tokens,
                            .sampling = o.sampling,
                            .stop_ids = m.stop_ids,
                            .cached_prefix = common};
    options.sampling.seed += messages.size();  // a new draw each turn, reproducible for the same conversation
    Tokenizer::StreamDecoder stream(m.tokenizer, /*skip_special_tokens=*/true);
    std::string answer;
    const GenerateResult r = generate(*context, 0, prompt, options, [&](int32_t token) {
      const std::string piece = stream.push(token);
      answer += piece;
      fmt::print("{}", piece);
      std::fflush(stdout);
    });
    const std::string tail = stream.flush();
    answer += tail;
    fmt::print("{}\n", tail);
    fmt::print(stderr, "[{} tokens, {:.1f} tokens/s, stopped by {}]\n", r.tokens.size(),
               r.decode_tokens_per_second(), r.stop_reason);
    cached = prompt;
    cached.insert(cached.end(), r.tokens.begin(), r.tokens.end() - (r.tokens.empty() ? 0 : 1));
    messages.push_back({"assistant", answer});
  }
}

}  // namespace

void add_chat(CLI::App& app) {
  auto options = std::make_shared<ChatCliOptions>();
  CLI::App* cmd = app.add_subcommand("chat", "interactive multi-turn chat with the model's chat template");
  add_model_options(*cmd, options->model);
  cmd->add_option("--system", options->system, "system message");
  cmd->add_option("--max-tokens", options->max_tokens, "new tokens per answer at most")
      ->capture_default_str();
  cmd->add_option("--ctx", options->ctx, "context positions for the whole conversation")
      ->capture_default_str();
  cmd->add_option("--temperature", options->sampling.temperature, "0: greedy (default: the model's)");
  cmd->add_option("--top-k", options->sampling.top_k, "0: off");
  cmd->add_option("--top-p", options->sampling.top_p, "1: off");
  cmd->add_option("--min-p", options->sampling.min_p, "0: off");
  cmd->add_option("--seed", options->sampling.seed, "sampling seed")->check(kSeedValidator);
  cmd->callback([options, cmd] { run(*options, *cmd); });
}

}  // namespace qllm::cli
