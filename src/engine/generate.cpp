#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include "qllm/error.h"

namespace qllm {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Feeds `tokens` to sequence `seq` from `start` (in chunks of the context's batch limit) and returns the
// logits after the last one.
std::vector<float> feed(Context& context, int seq, std::span<const int32_t> tokens, int64_t start) {
  const int64_t vocab = context.model().config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(vocab));
  const auto chunk = static_cast<size_t>(context.max_batch_tokens());
  for (size_t done = 0; done < tokens.size(); done += chunk) {
    const std::span<const int32_t> part = tokens.subspan(done, std::min(chunk, tokens.size() - done));
    const SequenceInput input{seq, start + static_cast<int64_t>(done), part};
    const bool last = done + part.size() == tokens.size();
    context.forward(std::span<const SequenceInput>(&input, 1),
                    last ? ForwardOutputs{.last_logits = logits} : ForwardOutputs{});
  }
  return logits;
}

}  // namespace

GenerateResult generate(Context& context, int seq, std::span<const int32_t> prompt,
                        const GenerateOptions& options, const TokenCallback& on_token) {
  const int64_t capacity = context.max_positions();
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  QLLM_CHECK(n_prompt > 0, "generate: empty prompt");
  QLLM_CHECK(n_prompt < capacity,
             "prompt of {} tokens does not fit in the context of {} positions with room for one new token",
             n_prompt, capacity);
  QLLM_CHECK(options.max_new_tokens > 0, "generate: max new tokens must be positive, got {}",
             options.max_new_tokens);
  // The last sampled token is never fed back, so the context needs prompt + max_new - 1 positions.
  const int64_t max_new = std::min(options.max_new_tokens, capacity - n_prompt + 1);
  options.sampling.validate();

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
  // At least the prompt's last token is fed: its logits give the first new token.
  const int64_t cached =
      std::clamp<int64_t>(options.cached_prefix, 0, std::min(n_prompt - 1, context.length(seq)));
  context.truncate(seq, cached);
  std::vector<float> logits = feed(context, seq, prompt.subspan(static_cast<size_t>(cached)), cached);
  int32_t token = sampler.sample(logits, history);
  result.prefill_seconds = seconds_since(start);
  if (emit(token)) return result;

  start = std::chrono::steady_clock::now();
  double callback_seconds = 0;  // streaming output is not decode time
  for (int64_t i = 1; i < max_new; ++i) {
    logits = feed(context, seq, std::span<const int32_t>(&token, 1), n_prompt + i - 1);
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
