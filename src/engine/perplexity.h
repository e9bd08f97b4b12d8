// Perplexity of a token stream. Protocols differ in what they score, so results carry the protocol's
// name and are only comparable within one protocol (GUIDE section 5):
//   gptq-hf  : floor(n / ctx) non-overlapping windows of ctx tokens, each a fresh sequence; every position
//              but the first of a window is scored; PPL = exp(mean NLL). What papers quote.
//   (llama.cpp's protocol, BOS-prefixed chunks scoring their second half, is a later addition: a new
//    PerplexityProtocol value and a window scorer beside score_window_gptq.)
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/causal_lm.h"

namespace qllm {

enum class PerplexityProtocol { GptqHf };
std::string_view perplexity_protocol_name(PerplexityProtocol protocol);  // "gptq-hf"

// -log p(tokens[i] | tokens[0..i-1]) for i = 1..n-1, one sequence starting at position 0 (n - 1 values).
// Fed to the model in chunks of `chunk` tokens through the KV cache, so memory holds chunk x vocab logits.
std::vector<double> token_nll(CausalLm& model, std::span<const int32_t> tokens, int64_t chunk = 512);

struct PerplexityOptions {
  PerplexityProtocol protocol = PerplexityProtocol::GptqHf;
  int64_t ctx = 2048;           // window length
  int64_t max_tokens = 0;       // use only the first max_tokens tokens of the stream (0: all)
  int64_t chunk = 512;          // tokens per forward call within a window
  bool keep_token_nll = false;  // also return the NLL of every scored token
  std::function<void(int64_t window, int64_t windows, double running_ppl)> progress;
};

struct PerplexityResult {
  std::string protocol;
  int64_t ctx = 0;
  int64_t windows = 0;
  int64_t tokens_used = 0;    // windows * ctx
  int64_t scored_tokens = 0;  // windows * (ctx - 1)
  double mean_nll = 0;
  double perplexity = 0;
  double seconds = 0;
  std::vector<double> token_nll;  // [scored_tokens], window after window (when keep_token_nll)
  // Text evaluated per second: every window's ctx tokens (its last is scored, never fed to the model).
  double tokens_per_second() const { return seconds > 0 ? tokens_used / seconds : 0; }
};

PerplexityResult perplexity(CausalLm& model, std::span<const int32_t> tokens,
                            const PerplexityOptions& options);

}  // namespace qllm
