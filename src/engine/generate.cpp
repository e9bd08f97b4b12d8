#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include "qllm/error.h"

namespace qllm {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The logits of the one sequence's last position, by value (the sampler writes into them).
std::vector<float> forward_last(CausalLm& model, std::span<const int32_t> tokens, int64_t start_position) {
  const SequenceInput input{0, start_position, tokens};
  return model.forward(std::span<const SequenceInput>(&input, 1), /*last_only=*/true);
}

}  // namespace

std::vector<int32_t> stop_ids_for(const LlamaConfig& config, std::span<const int32_t> extra) {
  std::vector<int32_t> ids;
  for (int64_t id : config.eos_token_ids) ids.push_back(static_cast<int32_t>(id));
  ids.insert(ids.end(), extra.begin(), extra.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

GenerateResult generate(CausalLm& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                        const TokenCallback& on_token) {
  const int64_t context = model.config().max_position_embeddings;
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  QLLM_CHECK(n_prompt > 0, "generate: empty prompt");
  QLLM_CHECK(
      n_prompt < context,
      "prompt of {} tokens does not fit in the context of {} positions (max_position_embeddings) with room "
      "for one new token",
      n_prompt, context);
  QLLM_CHECK(options.max_new_tokens > 0, "generate: max new tokens must be positive, got {}",
             options.max_new_tokens);
  const int64_t max_new = std::min(options.max_new_tokens, context - n_prompt);
  // The last sampled token is never fed back, so the cache needs prompt + max_new - 1 positions.
  model.allocate_cache(1, n_prompt + max_new - 1);

  Sampler sampler(options.sampling);
  GenerateResult result;
  result.prompt_tokens = n_prompt;
  std::vector<int32_t> history(prompt.begin(), prompt.end());  // prompt and generated, for the penalty
  auto emit = [&](int32_t token) {
    result.tokens.push_back(token);
    history.push_back(token);
    if (on_token) on_token(token);
    const bool stop =
        std::find(options.stop_ids.begin(), options.stop_ids.end(), token) != options.stop_ids.end();
    if (stop) result.stop_reason = "eos";
    return stop;
  };

  auto start = std::chrono::steady_clock::now();
  std::vector<float> logits = forward_last(model, prompt, 0);
  int32_t token = sampler.sample(logits, history);
  result.prefill_seconds = seconds_since(start);
  if (emit(token)) return result;

  start = std::chrono::steady_clock::now();
  double callback_seconds = 0;  // streaming output is not decode time
  for (int64_t i = 1; i < max_new; ++i) {
    logits = forward_last(model, std::span<const int32_t>(&token, 1), n_prompt + i - 1);
    token = sampler.sample(logits, history);
    ++result.decode_steps;
    const auto callback_start = std::chrono::steady_clock::now();
    const bool stop = emit(token);
    callback_seconds += seconds_since(callback_start);
    if (stop) break;
  }
  result.decode_seconds = seconds_since(start) - callback_seconds;
  if (result.stop_reason.empty())
    result.stop_reason = max_new < options.max_new_tokens ? "context" : "max_tokens";
  return result;
}

}  // namespace qllm
