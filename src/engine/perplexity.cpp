#include "engine/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "qllm/error.h"

namespace qllm {

namespace {

// -log softmax(logits)[target], with the log-sum-exp taken in double. `position` names the token in errors.
double nll_of(std::span<const float> logits, int32_t target, int64_t position) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max);
  QLLM_CHECK(std::isfinite(sum) && std::isfinite(max),
             "perplexity: the logits predicting token {} are not finite (the model produced NaN/Inf)",
             position);
  return std::log(sum) + max - static_cast<double>(logits[static_cast<size_t>(target)]);
}

}  // namespace

std::string_view perplexity_protocol_name(PerplexityProtocol protocol) {
  switch (protocol) {
    case PerplexityProtocol::GptqHf:
      return "gptq-hf";
  }
  return "?";
}

std::vector<double> token_nll(CausalLm& model, std::span<const int32_t> tokens, int64_t chunk) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t vocab = model.config().vocab_size;
  QLLM_CHECK(n >= 2, "token_nll: need at least 2 tokens, got {}", n);
  QLLM_CHECK(chunk > 0, "token_nll: chunk must be positive, got {}", chunk);
  QLLM_CHECK(n <= model.config().max_position_embeddings,
             "token_nll: {} tokens exceed the context of {} positions (max_position_embeddings)", n,
             model.config().max_position_embeddings);
  // Every id, also the last (scored but never fed to the model, so forward() does not check it).
  for (int64_t i = 0; i < n; ++i) {
    QLLM_CHECK(tokens[i] >= 0 && tokens[i] < vocab,
               "token_nll: token {} at position {} is outside the vocabulary of {} (tokenizer and model "
               "disagree?)",
               tokens[i], i, vocab);
  }
  if (model.cache_slots() < 1 || model.cache_capacity() < n) model.allocate_cache(1, n);

  std::vector<double> nll;
  nll.reserve(static_cast<size_t>(n - 1));
  // The last token predicts nothing that is scored, so it is never fed.
  for (int64_t start = 0; start < n - 1; start += chunk) {
    const int64_t count = std::min(chunk, n - 1 - start);
    const SequenceInput input{0, start, tokens.subspan(start, count)};
    const std::vector<float> logits = model.forward(std::span<const SequenceInput>(&input, 1), false);
    for (int64_t i = 0; i < count; ++i) {
      const std::span<const float> row(logits.data() + i * vocab, static_cast<size_t>(vocab));
      nll.push_back(nll_of(row, tokens[start + i + 1], start + i + 1));
    }
  }
  return nll;
}

PerplexityResult perplexity(CausalLm& model, std::span<const int32_t> tokens,
                            const PerplexityOptions& options) {
  QLLM_CHECK(options.ctx >= 2, "perplexity: ctx must be at least 2, got {}", options.ctx);
  QLLM_CHECK(options.ctx <= model.config().max_position_embeddings,
             "perplexity: ctx {} exceeds the model's context of {} positions (max_position_embeddings)",
             options.ctx, model.config().max_position_embeddings);
  QLLM_CHECK(options.max_tokens >= 0, "perplexity: max tokens must be >= 0, got {}", options.max_tokens);
  int64_t n = static_cast<int64_t>(tokens.size());
  if (options.max_tokens > 0) n = std::min(n, options.max_tokens);
  const int64_t windows = n / options.ctx;
  QLLM_CHECK(windows >= 1, "perplexity: {} tokens do not fill one window of ctx = {}", n, options.ctx);

  PerplexityResult result;
  result.protocol = std::string(perplexity_protocol_name(options.protocol));
  result.ctx = options.ctx;
  result.windows = windows;
  result.tokens_used = windows * options.ctx;
  const auto start = std::chrono::steady_clock::now();
  model.allocate_cache(1, options.ctx);
  double nll_sum = 0.0;
  for (int64_t w = 0; w < windows; ++w) {
    const std::vector<double> nll =
        token_nll(model, tokens.subspan(w * options.ctx, options.ctx), options.chunk);
    for (double v : nll) nll_sum += v;
    if (options.keep_token_nll) result.token_nll.insert(result.token_nll.end(), nll.begin(), nll.end());
    result.scored_tokens += static_cast<int64_t>(nll.size());
    if (options.progress) options.progress(w + 1, windows, std::exp(nll_sum / result.scored_tokens));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.mean_nll = nll_sum / static_cast<double>(result.scored_tokens);
  result.perplexity = std::exp(result.mean_nll);
  return result;
}

}  // namespace qllm
