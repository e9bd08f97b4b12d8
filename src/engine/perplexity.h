// Perplexity of a token stream. Protocols differ in what they score, so results carry the protocol's
// name and are only comparable within one protocol (../shared/GUIDE.md section 5):
//   hf (gptq-hf)  floor(n / ctx) non-overlapping windows of ctx tokens from the text tokenized without special
//                 tokens, each a fresh sequence; every position but the first of a window is scored. What
//                 papers quote.
//   llama.cpp     llama-perplexity's: the text tokenized with special tokens, floor(n / ctx) chunks of ctx
//                 tokens, the first token of each chunk replaced by BOS when the tokenizer adds one, only the
//                 second half of each chunk scored (positions ctx/2 .. ctx-2 predicting the next token).
// PPL = exp(mean NLL); the error is llama.cpp's: PPL x the standard error of the mean NLL.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/causal_lm.h"
#include "qllm/tokenizer.h"

namespace qllm {

enum class PerplexityProtocol { Hf, LlamaCpp };
std::string_view perplexity_protocol_name(PerplexityProtocol protocol);  // "hf", "llama.cpp"
PerplexityProtocol parse_perplexity_protocol(std::string_view name);     // hf | gptq-hf | llama.cpp

// The ids a protocol scores `text` as (special tokens added for llama.cpp's, not for hf).
std::vector<int32_t> perplexity_tokens(const Tokenizer& tokenizer, std::string_view text,
                                       PerplexityProtocol protocol);

struct PerplexityOptions {
  PerplexityProtocol protocol = PerplexityProtocol::Hf;
  int64_t ctx = 2048;       // window (chunk) length
  int64_t max_windows = 0;  // score only the first N windows (0: all)
  std::optional<int32_t>
      bos;  // llama.cpp protocol: the id put first in each chunk (when the tokenizer adds BOS)
  bool keep_token_nll = false;  // also return the NLL of every scored token
  std::function<void(int64_t window, int64_t windows, double running_ppl)> progress;
};

struct PerplexityResult {
  std::string protocol;
  int64_t ctx = 0;
  int64_t windows = 0;
  int64_t tokens_used = 0;  // windows * ctx
  int64_t scored_tokens = 0;
  double mean_nll = 0;
  double perplexity = 0;
  double perplexity_error = 0;  // PPL x standard error of the mean NLL
  double seconds = 0;
  std::vector<double> token_nll;  // [scored_tokens], window after window (when keep_token_nll)
  // Text evaluated per second: every window's ctx tokens.
  double tokens_per_second() const { return seconds > 0 ? tokens_used / seconds : 0; }
};

// Scores the windows `context.max_sequences()` at a time (each window a sequence of the context, fed in chunks
// of the context's max_batch_tokens); the context needs max_positions >= ctx.
PerplexityResult perplexity(Context& context, std::span<const int32_t> tokens,
                            const PerplexityOptions& options);

}  // namespace qllm
