// qllm generate: text from a prompt (or a chat turn), streamed as it is produced, with prefill and
// decode speed reported at the end.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "core/file_io.h"
#include "core/json.h"
#include "core/table.h"
#include "engine/generate.h"
#include "model/llama_ref.h"
#include "qllm/error.h"
#include "qllm/tokenizer.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

namespace {

struct GenerateCliOptions {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  bool chat = false;
  std::string system;
  int64_t max_tokens = 128;
  SamplingParams sampling;
  std::string device = "cpu";
  bool json = false;
};

// Sampling defaults as Hugging Face's generate() takes them from generation_config.json: greedy unless
// do_sample, then its temperature / top_p / top_k (HF's default top_k is 50) and repetition penalty.
SamplingParams generation_config_defaults(const std::string& dir) {
  SamplingParams p;
  const auto path = std::filesystem::path(dir) / "generation_config.json";
  if (!std::filesystem::exists(path)) return p;
  const nlohmann::json j = read_json_file(path);
  const std::string file = path.string();
  // Absent or null fields take HF's defaults; a field of the wrong type is an error naming it.
  auto present = [&](const char* key) { return j.contains(key) && !j[key].is_null(); };
  auto number = [&](const char* key, double fallback) {
    if (!present(key)) return fallback;
    QLLM_CHECK(j[key].is_number(), "{}: '{}' must be a number, not {}", file, key, json_excerpt(j[key]));
    return j[key].get<double>();
  };
  p.repetition_penalty = static_cast<float>(number("repetition_penalty", 1.0));
  bool do_sample = false;
  if (present("do_sample")) {
    QLLM_CHECK(j["do_sample"].is_boolean(), "{}: 'do_sample' must be true or false, not {}", file,
               json_excerpt(j["do_sample"]));
    do_sample = j["do_sample"].get<bool>();
  }
  if (do_sample) {
    p.temperature = static_cast<float>(number("temperature", 1.0));
    p.top_p = static_cast<float>(number("top_p", 1.0));
    p.min_p = static_cast<float>(number("min_p", 0.0));
    if (present("top_k")) {
      QLLM_CHECK(j["top_k"].is_number_integer() && j["top_k"].get<int64_t>() >= 0,
                 "{}: 'top_k' must be a non-negative integer, not {}", file, json_excerpt(j["top_k"]));
      p.top_k = j["top_k"].get<int64_t>();
    } else {
      p.top_k = 50;
    }
  }
  try {
    p.validate();
  } catch (const Error& e) {
    fail("{}: {}", file, e.what());
  }
  return p;
}

std::vector<int32_t> prompt_ids(const GenerateCliOptions& o, const Tokenizer& tokenizer) {
  if (!o.chat) {
    QLLM_CHECK(o.system.empty(), "--system needs --chat");
    return tokenizer.encode(o.prompt, /*add_special_tokens=*/true);  // BOS as HF adds it
  }
  std::vector<ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  messages.push_back({"user", o.prompt});
  // The rendered template carries its own BOS, as HF's apply_chat_template(tokenize=True) encodes it.
  const std::string text = ChatTemplate::load(o.model).render(messages, /*add_generation_prompt=*/true);
  return tokenizer.encode(text, /*add_special_tokens=*/false);
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

void run(GenerateCliOptions o) {
  if (!o.prompt_file.empty()) o.prompt = read_text_file(o.prompt_file);
  QLLM_CHECK(o.device == "cpu" || o.device == "cuda", "--device must be cpu or cuda, not '{}'", o.device);
  QLLM_CHECK(o.device != "cuda",
             "--device cuda: not yet supported (the CUDA engine comes in a later issue); "
             "use --device cpu");
  QLLM_CHECK(o.max_tokens > 0, "--max-tokens must be positive, got {}", o.max_tokens);
  o.sampling.validate();
  const LlamaConfig config = LlamaConfig::load(o.model);
  const Tokenizer tokenizer = Tokenizer::load(o.model);
  check_tokenizer_fits(tokenizer, config, o.model);
  std::vector<int32_t> prompt;
  try {
    prompt = prompt_ids(o, tokenizer);
  } catch (const Error& e) {
    if (o.prompt_file.empty()) throw;
    fail("--prompt-file {}: {}", o.prompt_file, e.what());
  }
  QLLM_CHECK(
      static_cast<int64_t>(prompt.size()) < config.max_position_embeddings,
      "prompt of {} tokens does not fit in the context of {} positions (max_position_embeddings of {})",
      prompt.size(), config.max_position_embeddings, o.model);

  const int64_t room = config.max_position_embeddings - static_cast<int64_t>(prompt.size());
  if (o.max_tokens > room) {
    fmt::print(stderr,
               "note: --max-tokens {} capped to {}: the prompt's {} tokens leave that much of the {} "
               "positions of the context\n",
               o.max_tokens, room, prompt.size(), config.max_position_embeddings);
  }
  const auto model = LlamaRef::load(o.model, /*verbose=*/!o.json && config.num_hidden_layers > 8);
  GenerateOptions options;
  options.max_new_tokens = o.max_tokens;
  options.sampling = o.sampling;
  std::vector<int32_t> extra_stops;
  if (const auto eot = tokenizer.token_id("<|eot_id|>")) extra_stops.push_back(*eot);
  options.stop_ids = stop_ids_for(config, extra_stops);
  if (!o.json) fmt::print(stderr, "{} prompt tokens, sampling: {}\n", prompt.size(), o.sampling.describe());

  Tokenizer::StreamDecoder stream(tokenizer, /*skip_special_tokens=*/true);
  const GenerateResult r = generate(*model, prompt, options, [&](int32_t token) {
    if (o.json) return;
    fmt::print("{}", stream.push(token));
    std::fflush(stdout);
  });
  if (!o.json) {
    fmt::print("{}\n", stream.flush());
    print_stats(r, model->device_name());
    return;
  }
  const nlohmann::json out = {{"command", "generate"},
                              {"model", o.model},
                              {"device", model->device_name()},
                              {"sampling", o.sampling.describe()},
                              {"prompt_ids", prompt},
                              {"tokens", r.tokens},
                              {"text", tokenizer.decode(r.tokens, /*skip_special_tokens=*/true)},
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
  CLI::App* cmd = app.add_subcommand("generate", "generate text from a prompt (CPU reference engine)");
  cmd->add_option("--model", options->model, "Hugging Face checkpoint directory")->required();
  auto* prompt = cmd->add_option("--prompt", options->prompt, "the prompt (or the user message with --chat)");
  cmd->add_option("--prompt-file", options->prompt_file, "read the prompt from this UTF-8 file instead")
      ->excludes(prompt);
  cmd->add_flag("--chat", options->chat, "render the prompt as a user turn with the model's chat template");
  cmd->add_option("--system", options->system, "system message (with --chat)");
  cmd->add_option("--max-tokens", options->max_tokens, "new tokens at most")->capture_default_str();
  auto* temperature = cmd->add_option("--temperature", options->sampling.temperature, "0: greedy");
  auto* top_k = cmd->add_option("--top-k", options->sampling.top_k, "0: off");
  auto* top_p = cmd->add_option("--top-p", options->sampling.top_p, "1: off");
  auto* min_p = cmd->add_option("--min-p", options->sampling.min_p, "0: off");
  auto* penalty = cmd->add_option("--repetition-penalty", options->sampling.repetition_penalty, "1: off");
  cmd->add_option("--seed", options->sampling.seed, "sampling seed")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--device", options->device, "cpu (cuda: later)")->capture_default_str();
  cmd->add_flag("--json", options->json, "print one JSON object at the end instead of streaming");
  cmd->footer(
      "Sampling options not given take the model's generation_config.json values, as HF generate() does.");
  cmd->callback([=] {
    if (prompt->count() == 0 && options->prompt_file.empty()) {
      throw CLI::RequiredError("--prompt or --prompt-file");
    }
    // Flags given on the command line win over generation_config.json.
    GenerateCliOptions o = *options;
    const SamplingParams defaults = generation_config_defaults(o.model);
    if (temperature->count() == 0) o.sampling.temperature = defaults.temperature;
    if (top_k->count() == 0) o.sampling.top_k = defaults.top_k;
    if (top_p->count() == 0) o.sampling.top_p = defaults.top_p;
    if (min_p->count() == 0) o.sampling.min_p = defaults.min_p;
    if (penalty->count() == 0) o.sampling.repetition_penalty = defaults.repetition_penalty;
    // As HF warns: filters given for a greedy run (no --temperature, do_sample off) change nothing.
    if (o.sampling.greedy() && top_k->count() + top_p->count() + min_p->count() > 0) {
      fmt::print(stderr,
                 "note: --top-k, --top-p and --min-p do nothing with greedy decoding (temperature 0; the "
                 "model's generation_config.json does not sample): pass --temperature to sample\n");
    }
    run(o);
  });
}

}  // namespace qllm::cli
