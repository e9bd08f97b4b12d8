// The OpenAI API's request and response bodies as qllm serves them (POST /v1/completions and
// /v1/chat/completions): parsing a request into what the scheduler needs, with every wrong type or value an
// ApiError carrying the HTTP status and OpenAI's error object; and the JSON of responses and stream chunks.
// Unknown fields are ignored (clients send many); fields qllm cannot honour (n > 1, echo, tools) are
// refused rather than silently dropped.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/sampler.h"
#include "qllm/tokenizer.h"
#include "server/scheduler.h"

namespace qllm::server {

// An error answered as {"error": {"message", "type", "param", "code"}} with HTTP `status`.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {});
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  std::string type() const;  // OpenAI's type for the status: invalid_request_error, authentication_error...

 private:
  int status_;
  std::string param_;
  std::string code_;
};

nlohmann::json error_json(const ApiError& error);

enum class Endpoint { Completions, ChatCompletions };

struct CompletionRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::string model;                  // empty: not given (the served model)
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completions: text
  std::vector<int32_t>
      prompt_tokens;  // completions: token ids instead of text (checked against the vocab later)
  std::optional<int64_t> max_tokens;  // not given: what the context leaves
  SamplingParams sampling;            // the model's defaults with the request's fields applied
  std::vector<std::string> stop;      // up to kMaxStopStrings, each non-empty
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with usage and no choices
  bool ignore_eos = false;     // llama.cpp's extension (benchmarks): the stop ids do not end generation
  // Log-probabilities of the output tokens: -1 none; k = 0..20 with the k likeliest alternatives of each
  // (completions: `logprobs: k`; chat: `logprobs: true` and `top_logprobs: k`).
  int logprobs = -1;
};

inline constexpr size_t kMaxStopStrings = 4;   // OpenAI's limit
inline constexpr size_t kMaxStopLength = 256;  // bytes of one stop string
inline constexpr size_t kMaxMessages = 4096;

// Parses a request body (already JSON). `defaults` are the model's sampling defaults (generation_config.json).
CompletionRequest parse_completion_request(const nlohmann::json& body, Endpoint endpoint,
                                           const SamplingParams& defaults);

// Token counts of a response.
struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};
nlohmann::json usage_json(const Usage& usage);

// Fields shared by every response of one request.
struct ResponseMeta {
  std::string id;  // "chatcmpl-..." / "cmpl-..."
  int64_t created = 0;
  std::string model;
  Endpoint endpoint = Endpoint::Completions;
};

// A choice's "logprobs" object for `tokens` (one TokenLogprob each, `top` alternatives kept), in the
// endpoint's shape: completions {tokens, token_logprobs, top_logprobs, text_offset}, chat {content: [{token,
// logprob, bytes, top_logprobs}]}. A token's text is what it decodes to (bytes of a UTF-8 character split over
// tokens are replaced when written, and given exactly in chat's `bytes`). `text_offset`: the completion's
// bytes before the first token, advanced past these (a stream's chunks continue it).
nlohmann::json logprobs_json(Endpoint endpoint, const Tokenizer& tokenizer, std::span<const int32_t> tokens,
                             std::span<const TokenLogprob> logprobs, int top, int64_t& text_offset);

// The whole (non-streamed) response; `logprobs` null unless asked.
nlohmann::json completion_json(const ResponseMeta& meta, const std::string& text,
                               std::string_view finish_reason, const Usage& usage,
                               const nlohmann::json& logprobs = nullptr);
// One stream chunk: `text` as a delta (the first chat chunk also carries the role); finish_reason null
// unless given; usage attached when given (the last chunk); `logprobs` those of the chunk's tokens.
nlohmann::json chunk_json(const ResponseMeta& meta, const std::string& text, bool first,
                          std::optional<std::string_view> finish_reason, const std::optional<Usage>& usage,
                          const nlohmann::json& logprobs = nullptr);
// stream_options.include_usage's last chunk: no choices, the usage.
nlohmann::json usage_chunk_json(const ResponseMeta& meta, const Usage& usage);

// JSON text safe for any string content: invalid UTF-8 is replaced, never thrown on.
std::string dump(const nlohmann::json& value);

}  // namespace qllm::server
