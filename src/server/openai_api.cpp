#include "server/openai_api.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/json.h"
#include "kernels/sampling/top_logprobs.h"
#include "qllm/error.h"

namespace qllm::server {

using nlohmann::json;

ApiError::ApiError(int status, std::string message, std::string param, std::string code)
    : std::runtime_error(std::move(message)),
      status_(status),
      param_(std::move(param)),
      code_(std::move(code)) {}

std::string ApiError::type() const {
  switch (status_) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    default:
      return status_ >= 500 ? "server_error" : "invalid_request_error";
  }
}

json error_json(const ApiError& error) {
  json e = {{"message", error.what()}, {"type", error.type()}, {"param", nullptr}, {"code", nullptr}};
  if (!error.param().empty()) e["param"] = error.param();
  if (!error.code().empty()) e["code"] = error.code();
  return {{"error", e}};
}

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, fmt::format("'{}': {}", param, message), param);
}

// The field's value, or nullptr when absent or null (OpenAI treats null as "not given").
const json* field(const json& body, const char* name) {
  const auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number(const json& body, const char* name, double lo, double hi) {
  const json& v = body.at(name);
  if (!v.is_number()) bad(name, fmt::format("expected a number, got {}", json_excerpt(v)));
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) bad(name, fmt::format("{} is outside [{}, {}]", x, lo, hi));
  return x;
}

int64_t integer(const json& v, const char* name) {
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      bad(name, "too large");
    return static_cast<int64_t>(v.get<uint64_t>());
  }
  if (!v.is_number_integer()) bad(name, fmt::format("expected an integer, got {}", json_excerpt(v)));
  return v.get<int64_t>();
}

bool boolean(const json& v, const char* name) {
  if (!v.is_boolean()) bad(name, fmt::format("expected true or false, got {}", json_excerpt(v)));
  return v.get<bool>();
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts (joined).
std::string message_content(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad("messages", "content must be a string or an array of text parts");
  std::string text;
  for (const json& part : content) {
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      bad("messages", "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& body) {
  const json* v = field(body, "messages");
  if (v == nullptr) bad("messages", "required");
  if (!v->is_array() || v->empty()) bad("messages", "expected a non-empty array of messages");
  if (v->size() > kMaxMessages) bad("messages", fmt::format("more than {} messages", kMaxMessages));
  std::vector<ChatMessage> messages;
  for (const json& m : *v) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      bad("messages", "each message must be an object with a string 'role'");
    }
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "developer") {
      bad("messages", fmt::format("unsupported role {}", json_excerpt(m["role"])));
    }
    const json* content = field(m, "content");
    messages.push_back({role == "developer" ? "system" : role, content ? message_content(*content) : ""});
  }
  return messages;
}

// prompt: a string, an array of one string, or an array of token ids.
void parse_prompt(const json& body, CompletionRequest& r) {
  const json* v = field(body, "prompt");
  if (v == nullptr) bad("prompt", "required");
  if (v->is_string()) {
    r.prompt = v->get<std::string>();
  } else if (v->is_array() && v->size() == 1 && (*v)[0].is_string()) {
    r.prompt = (*v)[0].get<std::string>();
  } else if (v->is_array() && !v->empty() && (*v)[0].is_number()) {
    for (const json& id : *v) {
      const int64_t x = integer(id, "prompt");
      if (x < 0 || x > std::numeric_limits<int32_t>::max())
        bad("prompt", fmt::format("token id {} is negative or too large", x));
      r.prompt_tokens.push_back(static_cast<int32_t>(x));
    }
  } else {
    bad("prompt", "expected a string or an array of token ids (one prompt: n = 1 and no batches)");
  }
  if (r.prompt.empty() && r.prompt_tokens.empty()) bad("prompt", "empty");
}

std::vector<std::string> parse_stop(const json& v) {
  std::vector<std::string> stop;
  if (v.is_string()) {
    stop.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    if (v.size() > kMaxStopStrings) bad("stop", fmt::format("at most {} stop strings", kMaxStopStrings));
    for (const json& s : v) {
      if (!s.is_string()) bad("stop", "expected strings");
      stop.push_back(s.get<std::string>());
    }
  } else {
    bad("stop", "expected a string or an array of strings");
  }
  for (const std::string& s : stop) {
    if (s.empty() || s.size() > kMaxStopLength)
      bad("stop", fmt::format("stop strings must be 1..{} bytes", kMaxStopLength));
  }
  return stop;
}

// Completions: logprobs = k (null: none). Chat: logprobs = true|false, top_logprobs = k (with logprobs only).
void parse_logprobs(const json& body, CompletionRequest& r) {
  constexpr int64_t kMax = kMaxTopLogprobs;  // OpenAI's chat limit
  const json* v = field(body, "logprobs");
  if (r.endpoint == Endpoint::Completions) {
    if (v != nullptr && !v->is_null()) {
      const int64_t k = integer(*v, "logprobs");
      if (k < 0 || k > kMax) bad("logprobs", fmt::format("must be 0..{}, got {}", kMax, k));
      r.logprobs = static_cast<int>(k);
    }
    return;
  }
  const bool on = v != nullptr && !v->is_null() && boolean(*v, "logprobs");
  const json* top = field(body, "top_logprobs");
  int64_t k = 0;
  if (top != nullptr && !top->is_null()) {
    k = integer(*top, "top_logprobs");
    if (k < 0 || k > kMax) bad("top_logprobs", fmt::format("must be 0..{}, got {}", kMax, k));
    if (!on) bad("top_logprobs", "needs logprobs: true");
  }
  if (on) r.logprobs = static_cast<int>(k);
}

void parse_sampling(const json& body, CompletionRequest& r) {
  if (field(body, "temperature"))
    r.sampling.temperature = static_cast<float>(number(body, "temperature", 0, 2));
  if (field(body, "top_p")) {
    r.sampling.top_p = static_cast<float>(number(body, "top_p", 0, 1));
    if (r.sampling.top_p == 0) bad("top_p", "must be greater than 0");
  }
  if (field(body, "min_p")) r.sampling.min_p = static_cast<float>(number(body, "min_p", 0, 1));
  if (const json* v = field(body, "top_k")) {
    r.sampling.top_k = integer(*v, "top_k");
    if (r.sampling.top_k < 0) bad("top_k", "must be >= 0");
  }
  if (field(body, "repetition_penalty")) {
    r.sampling.repetition_penalty = static_cast<float>(number(body, "repetition_penalty", 1e-3, 100));
  }
  // OpenAI's seed is any 64-bit integer; the sampler's counter takes its bits.
  if (const json* v = field(body, "seed")) r.sampling.seed = static_cast<uint64_t>(integer(*v, "seed"));
}

// Fields qllm does not implement: refused when they ask for something, so that a client is not misled.
void refuse_unsupported(const json& body) {
  if (const json* v = field(body, "n"); v && integer(*v, "n") != 1) bad("n", "only n = 1 is supported");
  if (const json* v = field(body, "best_of"); v && integer(*v, "best_of") != 1)
    bad("best_of", "only 1 is supported");
  if (const json* v = field(body, "echo"); v && boolean(*v, "echo")) bad("echo", "echo is not supported");
  if (const json* v = field(body, "tools"); v && !(v->is_array() && v->empty()))
    bad("tools", "tools are not supported");
}

}  // namespace

CompletionRequest parse_completion_request(const json& body, Endpoint endpoint,
                                           const SamplingParams& defaults) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  CompletionRequest r;
  r.endpoint = endpoint;
  r.sampling = defaults;
  if (const json* v = field(body, "model")) {
    if (!v->is_string()) bad("model", "expected a string");
    r.model = v->get<std::string>();
  }
  if (endpoint == Endpoint::ChatCompletions) {
    r.messages = parse_messages(body);
  } else {
    parse_prompt(body, r);
  }
  refuse_unsupported(body);
  // max_completion_tokens is the chat API's newer name for max_tokens.
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    if (const json* v = field(body, name)) {
      r.max_tokens = integer(*v, name);
      if (*r.max_tokens <= 0) bad(name, fmt::format("must be positive, got {}", *r.max_tokens));
    }
  }
  parse_sampling(body, r);
  parse_logprobs(body, r);
  if (const json* v = field(body, "stop")) r.stop = parse_stop(*v);
  if (const json* v = field(body, "stream")) r.stream = boolean(*v, "stream");
  if (const json* v = field(body, "stream_options")) {
    if (!v->is_object()) bad("stream_options", "expected an object");
    if (const json* u = field(*v, "include_usage"))
      r.include_usage = boolean(*u, "stream_options.include_usage");
  }
  if (const json* v = field(body, "ignore_eos")) r.ignore_eos = boolean(*v, "ignore_eos");
  try {
    r.sampling.validate();
  } catch (const std::exception& e) {
    throw ApiError(400, e.what());
  }
  return r;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

namespace {

json base(const ResponseMeta& meta, bool chunk) {
  const bool chat = meta.endpoint == Endpoint::ChatCompletions;
  const char* object = chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return {{"id", meta.id},
          {"object", object},
          {"created", meta.created},
          {"model", meta.model},
          {"system_fingerprint", "qllm"}};
}

json reason(std::optional<std::string_view> finish_reason) {
  return finish_reason ? json(std::string(*finish_reason)) : json(nullptr);
}

}  // namespace

json logprobs_json(Endpoint endpoint, const Tokenizer& tokenizer, std::span<const int32_t> tokens,
                   std::span<const TokenLogprob> logprobs, int top, int64_t& text_offset) {
  QLLM_CHECK(tokens.size() == logprobs.size(), "logprobs_json: {} tokens, {} log-probabilities",
             tokens.size(), logprobs.size());
  auto bytes_of = [](std::string_view text) {
    json b = json::array();
    for (char c : text) b.push_back(static_cast<unsigned char>(c));
    return b;
  };
  auto count = [&](const TokenLogprob& lp) { return std::min(lp.top.size(), static_cast<size_t>(top)); };
  if (endpoint == Endpoint::ChatCompletions) {
    json content = json::array();
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string_view text = tokenizer.token_bytes(tokens[i]);
      json alternatives = json::array();
      for (size_t j = 0; j < count(logprobs[i]); ++j) {
        const auto& [id, logprob] = logprobs[i].top[j];
        const std::string_view alt = tokenizer.token_bytes(id);
        alternatives.push_back({{"token", std::string(alt)}, {"logprob", logprob}, {"bytes", bytes_of(alt)}});
      }
      content.push_back({{"token", std::string(text)},
                         {"logprob", logprobs[i].logprob},
                         {"bytes", bytes_of(text)},
                         {"top_logprobs", alternatives}});
      text_offset += static_cast<int64_t>(text.size());
    }
    return {{"content", content}, {"refusal", nullptr}};
  }
  json texts = json::array(), values = json::array(), tops = json::array(), offsets = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string_view text = tokenizer.token_bytes(tokens[i]);
    texts.push_back(std::string(text));
    values.push_back(logprobs[i].logprob);
    json alternatives = json::object();
    for (size_t j = 0; j < count(logprobs[i]); ++j) {
      const auto& [id, logprob] = logprobs[i].top[j];
      alternatives[std::string(tokenizer.token_bytes(id))] = logprob;
    }
    tops.push_back(alternatives);
    offsets.push_back(text_offset);
    text_offset += static_cast<int64_t>(text.size());
  }
  return {{"tokens", texts}, {"token_logprobs", values}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json completion_json(const ResponseMeta& meta, const std::string& text, std::string_view finish_reason,
                     const Usage& usage, const json& logprobs) {
  json r = base(meta, false);
  json choice = {{"index", 0}, {"finish_reason", std::string(finish_reason)}, {"logprobs", logprobs}};
  if (meta.endpoint == Endpoint::ChatCompletions) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  r["choices"] = json::array({choice});
  r["usage"] = usage_json(usage);
  return r;
}

json chunk_json(const ResponseMeta& meta, const std::string& text, bool first,
                std::optional<std::string_view> finish_reason, const std::optional<Usage>& usage,
                const json& logprobs) {
  json r = base(meta, true);
  json choice = {{"index", 0}, {"finish_reason", reason(finish_reason)}, {"logprobs", logprobs}};
  if (meta.endpoint == Endpoint::ChatCompletions) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || !finish_reason) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  r["choices"] = json::array({choice});
  if (usage) r["usage"] = usage_json(*usage);
  return r;
}

json usage_chunk_json(const ResponseMeta& meta, const Usage& usage) {
  json r = base(meta, true);
  r["choices"] = json::array();
  r["usage"] = usage_json(usage);
  return r;
}

std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace qllm::server
