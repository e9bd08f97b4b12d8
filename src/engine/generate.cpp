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
// token drawn after the last one (on the model's device: the logits stay there).
int32_t feed(Context& context, int seq, std::span<const int32_t> tokens, int64_t start,
             const TokenSampling& sampling) {
  int32_t next = -1;
  const auto chunk = static_cast<size_t>(context.max_batch_tokens());
  for (size_t done = 0; done < tokens.size(); done += chunk) {
    const std::span<const int32_t> part = tokens.subspan(done, std::min(chunk, tokens.size() - done));
    const SequenceInput input{seq, start + static_cast<int64_t>(done), part};
    const bool last = done + part.size() == tokens.size();
    ForwardOutputs outputs;
    if (last) {
      outputs.sampling = std::span<const TokenSampling>(&sampling, 1);
      outputs.sampled = std::span<int32_t>(&next, 1);
    }
    context.forward(std::span<const SequenceInput>(&input, 1), outputs);
  }
  return next;
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

  TokenSampling sampling{options.sampling, 0, {}};
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
  auto next_sampling = [&] {  // the penalty needs the history only when it is on
    if (options.sampling.repetition_penalty != 1.0f) sampling.history = history;
    return sampling;
  };
  int32_t token = feed(context, seq, prompt.subspan(static_cast<size_t>(cached)), cached, next_sampling());
  ++sampling.step;
  result.prefill_seconds = seconds_since(start);
  if (emit(token)) return result;

  start = std::chrono::steady_clock::now();
  double callback_seconds = 0;  // streaming output is not decode time
  for (int64_t i = 1; i < max_new; ++i) {
    token = feed(context, seq, std::span<const int32_t>(&token, 1), n_prompt + i - 1, next_sampling());
    ++sampling.step;
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
