#include "engine/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "qllm/error.h"

namespace qllm {

std::string_view perplexity_protocol_name(PerplexityProtocol protocol) {
  switch (protocol) {
    case PerplexityProtocol::Hf:
      return "hf";
    case PerplexityProtocol::LlamaCpp:
      return "llama.cpp";
  }
  return "?";
}

PerplexityProtocol parse_perplexity_protocol(std::string_view name) {
  if (name == "hf" || name == "gptq-hf") return PerplexityProtocol::Hf;
  if (name == "llama.cpp") return PerplexityProtocol::LlamaCpp;
  fail("unknown perplexity protocol '{}' (expected hf or llama.cpp)", name);
}

std::vector<int32_t> perplexity_tokens(const Tokenizer& tokenizer, std::string_view text,
                                       PerplexityProtocol protocol) {
  return tokenizer.encode(text, /*add_special_tokens=*/protocol == PerplexityProtocol::LlamaCpp);
}

PerplexityResult perplexity(Context& context, std::span<const int32_t> tokens,
                            const PerplexityOptions& options) {
  const int64_t ctx = options.ctx;
  QLLM_CHECK(ctx >= 4, "perplexity: ctx must be at least 4, got {}", ctx);
  QLLM_CHECK(ctx <= context.max_positions(), "perplexity: ctx {} exceeds the context's {} positions", ctx,
             context.max_positions());
  QLLM_CHECK(options.max_windows >= 0, "perplexity: max windows must be >= 0, got {}", options.max_windows);
  int64_t windows = static_cast<int64_t>(tokens.size()) / ctx;
  QLLM_CHECK(windows >= 1, "perplexity: {} tokens do not fill one window of ctx = {}", tokens.size(), ctx);
  if (options.max_windows > 0) windows = std::min(windows, options.max_windows);
  const bool llama_cpp = options.protocol == PerplexityProtocol::LlamaCpp;
  const int64_t first_scored = llama_cpp ? ctx / 2 : 0;  // position whose next token is scored first

  PerplexityResult result;
  result.protocol = std::string(perplexity_protocol_name(options.protocol));
  result.ctx = ctx;
  result.windows = windows;
  result.tokens_used = windows * ctx;
  const auto start = std::chrono::steady_clock::now();

  // Windows `group` at a time, each fed in chunks of `chunk` tokens, so a pass holds group x chunk tokens.
  const int64_t group = std::min<int64_t>(context.max_sequences(), windows);
  const int64_t chunk = std::max<int64_t>(1, std::min(ctx - 1, context.max_batch_tokens() / group));
  double nll_sum = 0.0, nll_sq_sum = 0.0;
  std::vector<int32_t> window_tokens(static_cast<size_t>(group * ctx));
  for (int64_t w0 = 0; w0 < windows; w0 += group) {
    const int64_t n = std::min(group, windows - w0);
    for (int64_t s = 0; s < n; ++s) {
      std::copy_n(tokens.begin() + (w0 + s) * ctx, ctx, window_tokens.begin() + s * ctx);
      if (llama_cpp && options.bos) window_tokens[s * ctx] = *options.bos;
    }
    std::vector<std::vector<double>> window_nll(static_cast<size_t>(n));
    // The last token of a window is scored, never fed.
    for (int64_t c = 0; c < ctx - 1; c += chunk) {
      const int64_t len = std::min(chunk, ctx - 1 - c);
      std::vector<SequenceInput> batch;
      std::vector<int32_t> targets;
      for (int64_t s = 0; s < n; ++s) {
        const int32_t* window = window_tokens.data() + s * ctx;
        batch.push_back({static_cast<int>(s), c, std::span<const int32_t>(window + c, len)});
        for (int64_t i = c; i < c + len; ++i) targets.push_back(i >= first_scored ? window[i + 1] : -1);
      }
      std::vector<double> nll(targets.size());
      context.forward(batch, {.targets = targets, .nll = nll});
      for (size_t i = 0; i < targets.size(); ++i) {
        if (targets[i] < 0) continue;
        nll_sum += nll[i];
        nll_sq_sum += nll[i] * nll[i];
        ++result.scored_tokens;
        if (options.keep_token_nll) window_nll[i / static_cast<size_t>(len)].push_back(nll[i]);
      }
    }
    for (const auto& v : window_nll) result.token_nll.insert(result.token_nll.end(), v.begin(), v.end());
    if (options.progress) options.progress(w0 + n, windows, std::exp(nll_sum / result.scored_tokens));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto count = static_cast<double>(result.scored_tokens);
  result.mean_nll = nll_sum / count;
  result.perplexity = std::exp(result.mean_nll);
  const double variance = nll_sq_sum / count - result.mean_nll * result.mean_nll;
  result.perplexity_error =
      variance > 0 && count > 1 ? std::sqrt(variance / (count - 1)) * result.perplexity : 0;
  return result;
}

}  // namespace qllm
