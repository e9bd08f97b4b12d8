#include "server/http_server.h"

#include <httplib.h>

#include <fmt/format.h>

#include <chrono>
#include <ctime>
#include <random>

#include <sys/socket.h>

#include "core/json.h"
#include "qllm/error.h"
#include "server/openai_api.h"
#include "server/text_stream.h"

namespace qllm::server {

using nlohmann::json;

namespace {

constexpr auto kPoll = std::chrono::milliseconds(200);  // a streaming handler's wait for tokens
constexpr int kKeepAlivePolls = 5;                      // a keep-alive comment after this many empty polls
constexpr int kKeepAliveIdleSeconds = 30;  // longer than clients keep idle connections (httpx: 5 s)

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e, int retry_after) {
  if (e.status() == 503) res.set_header("Retry-After", std::to_string(retry_after));
  send_json(res, e.status(), error_json(e));
}

std::string random_id(const char* prefix) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{}{:016x}", prefix, rng());
}

// Compares without an early exit, so the time taken does not tell how much of a key matched.
bool same_secret(const std::string& given, const std::string& key) {
  if (given.size() != key.size()) return false;
  unsigned diff = 0;
  for (size_t i = 0; i < key.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ key[i]);
  return diff == 0;
}

// Holds one of the server's in-flight places until destroyed (with the handler, or with a stream's state).
class InFlight {
 public:
  explicit InFlight(std::atomic<int>& count) : count_(count) {}
  ~InFlight() { count_.fetch_sub(1); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  std::atomic<int>& count_;
};

const char* finish_name(FinishReason reason, bool stop_string) {
  if (stop_string) return "stop";
  return reason == FinishReason::Length ? "length" : "stop";
}

// A streamed answer's state, shared by the content provider's calls.
struct StreamState {
  StreamState(std::shared_ptr<Job> j, TextStream t, ResponseMeta m, Usage u, bool usage_chunk,
              std::unique_ptr<InFlight> p)
      : job(std::move(j)),
        text(std::move(t)),
        meta(std::move(m)),
        usage(u),
        include_usage(usage_chunk),
        place(std::move(p)) {}
  StreamState(const StreamState&) = delete;
  StreamState& operator=(const StreamState&) = delete;

  std::shared_ptr<Job> job;
  TextStream text;
  ResponseMeta meta;
  Usage usage;
  bool include_usage = false;
  bool first = true;
  bool done = false;
  int idle_polls = 0;  // polls in a row without a token (waiting in the queue, a long prefill)
  std::unique_ptr<InFlight> place;
  // Log-probabilities (the request's logprobs, -1: none), with the tokenizer that names the tokens.
  int logprobs = -1;
  const Tokenizer* tokenizer = nullptr;
  int64_t text_offset = 0;

  ~StreamState() { job->cancel(); }  // finished, failed or the client left: the sequence is freed
};

bool write_event(httplib::DataSink& sink, const json& body) {
  const std::string event = "data: " + dump(body) + "\n\n";
  return sink.write(event.data(), event.size());
}

// One call of the chunked content provider: waits for tokens, writes them as events; at the end the last
// chunk (finish reason, usage) and [DONE]. False when the client is gone (httplib then closes).
bool stream_step(StreamState& s, httplib::DataSink& sink) {
  if (s.done) {
    sink.done();
    return true;
  }
  Job::Update u = s.job->wait(kPoll);
  std::string text;
  size_t consumed = 0;  // tokens of the update up to a stop string
  for (int32_t token : u.tokens) {
    ++s.usage.completion_tokens;
    ++consumed;
    text += s.text.push(token);
    if (s.text.stopped()) break;
  }
  const bool stopped = s.text.stopped();
  if (stopped) s.job->cancel();
  if (u.finished && !stopped) text += s.text.finish();
  json logprobs = nullptr;
  if (s.logprobs >= 0 && consumed > 0) {
    logprobs = logprobs_json(s.meta.endpoint, *s.tokenizer, std::span(u.tokens).first(consumed),
                             std::span(u.logprobs).first(consumed), s.logprobs, s.text_offset);
  }
  // A chunk for every delivery, even when its text is still incomplete UTF-8 or held back for a stop
  // string: clients see progress (and time to first token) as tokens come.
  if (!text.empty() || (consumed > 0 && (!stopped || !logprobs.is_null()))) {
    if (!write_event(sink, chunk_json(s.meta, text, s.first, std::nullopt, std::nullopt, logprobs)))
      return false;
    s.first = false;
  }
  if (!u.finished && !stopped) {
    // An SSE comment now and then while nothing comes: a client that left is noticed (the write fails)
    // while its request still waits, not only once it runs. Clients ignore comment lines.
    static constexpr std::string_view kKeepAlive = ": keep-alive\n\n";
    s.idle_polls = u.tokens.empty() ? s.idle_polls + 1 : 0;
    if (s.idle_polls % kKeepAlivePolls == 0 && s.idle_polls > 0)
      return sink.write(kKeepAlive.data(), kKeepAlive.size());
    return true;
  }
  if (u.finished && u.reason == FinishReason::Error) {
    const ApiError e(500, "generation failed: " + u.error);
    if (!write_event(sink, error_json(e))) return false;
  } else {
    const std::optional<Usage> usage = s.include_usage ? std::nullopt : std::optional<Usage>(s.usage);
    if (!write_event(sink, chunk_json(s.meta, "", s.first, finish_name(u.reason, stopped), usage)))
      return false;
    if (s.include_usage && !write_event(sink, usage_chunk_json(s.meta, s.usage))) return false;
  }
  static constexpr std::string_view kDone = "data: [DONE]\n\n";
  if (!sink.write(kDone.data(), kDone.size())) return false;
  s.done = true;
  sink.done();
  return true;
}

}  // namespace

// The routes' handlers, with what they share.
class HttpServer::Handlers {
 public:
  explicit Handlers(HttpServer& server) : s_(server) {}

  void completions(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
    if (s_.in_flight_.fetch_add(1) >= s_.options_.max_in_flight) {
      s_.in_flight_.fetch_sub(1);
      send_error(
          res,
          ApiError(429, fmt::format("too many requests in flight (at most {})", s_.options_.max_in_flight)),
          s_.options_.retry_after_seconds);
      return;
    }
    auto place = std::make_unique<InFlight>(s_.in_flight_);
    try {
      CompletionRequest request = parse(req, endpoint);
      JobSpec spec = job_spec(request);
      const Usage usage{static_cast<int64_t>(spec.prompt.size()), 0};
      std::shared_ptr<Job> job = s_.scheduler_.submit(std::move(spec));
      if (!job) throw ApiError(503, "the server is at capacity (request queue full): retry later");
      ResponseMeta meta{random_id(endpoint == Endpoint::ChatCompletions ? "chatcmpl-" : "cmpl-"),
                        static_cast<int64_t>(std::time(nullptr)), s_.options_.model_id, endpoint};
      if (request.stream) {
        stream(res, std::move(job), std::move(request), meta, usage, std::move(place));
      } else {
        answer(res, *job, request, meta, usage);
      }
    } catch (const ApiError& e) {
      send_error(res, e, s_.options_.retry_after_seconds);
    }
  }

  void models(httplib::Response& res) {
    const json model = {{"id", s_.options_.model_id},
                        {"object", "model"},
                        {"created", 0},
                        {"owned_by", "qllm"},
                        {"meta",
                         {{"device", s_.model_.model->device_name()},
                          {"quantization", s_.model_.model->quantization()},
                          {"context_positions", s_.context_positions_}}}};
    send_json(res, 200, {{"object", "list"}, {"data", json::array({model})}});
  }

 private:
  CompletionRequest parse(const httplib::Request& req, Endpoint endpoint) {
    json body;
    try {
      body = parse_json(req.body, "request body");
    } catch (const Error& e) {
      throw ApiError(400, e.what());
    }
    CompletionRequest r = parse_completion_request(body, endpoint, s_.model_.sampling_defaults);
    if (!r.model.empty() && r.model != s_.options_.model_id) {
      throw ApiError(404,
                     fmt::format("the model '{}' does not exist: this server serves '{}'",
                                 json_excerpt(json(r.model)), s_.options_.model_id),
                     "model", "model_not_found");
    }
    return r;
  }

  std::vector<int32_t> prompt_tokens(const CompletionRequest& r) {
    const LoadedModel& m = s_.model_;
    try {
      if (r.endpoint == Endpoint::ChatCompletions) return m.chat_ids(r.messages);
      if (r.prompt_tokens.empty()) return m.prompt_ids(r.prompt);
    } catch (const Error& e) {
      throw ApiError(400, fmt::format("the prompt cannot be tokenized: {}", e.what()),
                     r.endpoint == Endpoint::ChatCompletions ? "messages" : "prompt");
    }
    const int64_t vocab = m.model->config().vocab_size;
    for (int32_t id : r.prompt_tokens) {
      if (id >= vocab)
        throw ApiError(400, fmt::format("token id {} is outside the vocabulary of {}", id, vocab), "prompt");
    }
    return r.prompt_tokens;
  }

  JobSpec job_spec(const CompletionRequest& r) {
    JobSpec spec;
    spec.prompt = prompt_tokens(r);
    const int64_t ctx = s_.context_positions_;
    const auto n = static_cast<int64_t>(spec.prompt.size());
    if (n >= ctx) {
      throw ApiError(
          400,
          fmt::format("the prompt has {} tokens; this server's context holds {} positions (with room "
                      "for one new token)",
                      n, ctx),
          r.endpoint == Endpoint::ChatCompletions ? "messages" : "prompt", "context_length_exceeded");
    }
    if (r.max_tokens && *r.max_tokens > ctx) {
      throw ApiError(400,
                     fmt::format("max_tokens {} is more than the context's {} positions", *r.max_tokens, ctx),
                     "max_tokens");
    }
    // Not given: what the context leaves (the scheduler cuts a larger value the same way).
    spec.max_tokens = r.max_tokens.value_or(ctx - n + 1);
    spec.sampling = r.sampling;
    spec.logprobs = r.logprobs;
    if (!r.ignore_eos) spec.stop_ids = s_.model_.stop_ids;
    return spec;
  }

  void answer(httplib::Response& res, Job& job, const CompletionRequest& r, const ResponseMeta& meta,
              Usage usage) {
    TextStream text(s_.model_.tokenizer, r.stop);
    std::string out;
    std::vector<int32_t> tokens;  // up to a stop string, with their log-probabilities when asked
    std::vector<TokenLogprob> logprobs;
    Job::Update u;
    while (!u.finished && !text.stopped()) {
      u = job.wait(std::chrono::seconds(1));
      for (size_t i = 0; i < u.tokens.size(); ++i) {
        ++usage.completion_tokens;
        out += text.push(u.tokens[i]);
        tokens.push_back(u.tokens[i]);
        if (r.logprobs >= 0) logprobs.push_back(std::move(u.logprobs[i]));
        if (text.stopped()) break;
      }
    }
    job.cancel();  // after a stop string: free the sequence now
    if (u.finished && u.reason == FinishReason::Error) throw ApiError(500, "generation failed: " + u.error);
    if (!text.stopped()) out += text.finish();
    int64_t offset = 0;
    const json lp = r.logprobs >= 0 ? logprobs_json(meta.endpoint, s_.model_.tokenizer, tokens, logprobs,
                                                    r.logprobs, offset)
                                    : json(nullptr);
    send_json(res, 200, completion_json(meta, out, finish_name(u.reason, text.stopped()), usage, lp));
  }

  void stream(httplib::Response& res, std::shared_ptr<Job> job, CompletionRequest r, const ResponseMeta& meta,
              const Usage& usage, std::unique_ptr<InFlight> place) {
    auto state = std::make_shared<StreamState>(std::move(job), TextStream(s_.model_.tokenizer, r.stop), meta,
                                               usage, r.include_usage, std::move(place));
    state->logprobs = r.logprobs;
    state->tokenizer = &s_.model_.tokenizer;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream", [state](size_t, httplib::DataSink& sink) { return stream_step(*state, sink); },
        [state](bool) { state->job->cancel(); });
  }

  HttpServer& s_;
};

HttpServer::HttpServer(const LoadedModel& model, Scheduler& scheduler, ServerMetrics& metrics,
                       HttpOptions options)
    : model_(model),
      scheduler_(scheduler),
      metrics_(metrics),
      options_(std::move(options)),
      context_positions_(scheduler.max_positions()),
      http_(std::make_unique<httplib::Server>()),
      handlers_(std::make_unique<Handlers>(*this)) {
  httplib::Server& http = *http_;
  // A thread per connection: streaming clients each hold one for their whole answer.
  const size_t threads = static_cast<size_t>(options_.max_in_flight) + 16;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(options_.max_body_bytes);
  // The listening socket: SO_REUSEADDR (not httplib's default SO_REUSEPORT, which would let a second server
  // bind the same port silently), and its descriptor kept so that bind() can widen the accept backlog.
  http.set_socket_options([this](int sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_socket_ = sock;
  });
  http.set_write_timeout(std::chrono::seconds(30));
  // Clients keep connections in a pool and reuse them between requests; httplib's defaults (5 requests a
  // connection, 5 s idle) close them under a busy client, which then reads a closed socket (ReadError).
  http.set_keep_alive_max_count(100000);
  http.set_keep_alive_timeout(kKeepAliveIdleSeconds);
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options_.api_key.empty() || !req.path.starts_with("/v1/"))
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    const std::string given = auth.starts_with("Bearer ") ? auth.substr(7) : std::string();
    if (same_secret(given, options_.api_key)) return httplib::Server::HandlerResponse::Unhandled;
    send_error(
        res,
        ApiError(401, given.empty() ? "missing API key (Authorization: Bearer ...)" : "invalid API key", "",
                 "invalid_api_key"),
        0);
    return httplib::Server::HandlerResponse::Handled;
  });
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handlers_->completions(req, res, Endpoint::ChatCompletions);
  });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handlers_->completions(req, res, Endpoint::Completions);
  });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) { handlers_->models(res); });
  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"status", "ok"}});
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.prometheus(scheduler_.stats()), "text/plain; version=0.0.4");
  });
  // Errors httplib answers itself (no route, body too large, unreadable request) get OpenAI's JSON too.
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = fmt::format("HTTP {}", res.status);
    if (res.status == 404) message = fmt::format("no route {} {}", req.method, json_excerpt(json(req.path)));
    if (res.status == 405) message = fmt::format("method {} not allowed here", req.method);
    if (res.status == 413) message = "the request body is larger than this server accepts";
    send_json(res, res.status, error_json(ApiError(res.status, message)));
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string message = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
    }
    send_json(res, 500, error_json(ApiError(500, message)));
  });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics_.count_request(
        req.path.starts_with("/v1/") || req.path == "/health" || req.path == "/metrics" ? req.path : "other",
        res.status);
  });
}

HttpServer::~HttpServer() {
  stop();
}

int HttpServer::bind() {
  int port = options_.port;
  if (port == 0) {
    port = http_->bind_to_any_port(options_.host);
    QLLM_CHECK(port > 0, "cannot listen on {}: no free port", options_.host);
  } else {
    QLLM_CHECK(http_->bind_to_port(options_.host, port),
               "cannot listen on {}:{} (in use, or not an address of "
               "this machine)",
               options_.host, port);
  }
  options_.port = port;
  // Debian's libcpp-httplib is built with a listen backlog of 5: a burst of clients connecting at once (64
  // streaming clients) overflows it and the kernel resets some connections about a second later. Listening
  // again on the bound socket only sets a larger backlog.
  QLLM_CHECK(listen_socket_ >= 0 && ::listen(listen_socket_, SOMAXCONN) == 0,
             "cannot set the accept backlog of {}:{}", options_.host, port);
  return port;
}

void HttpServer::serve() {
  http_->listen_after_bind();
}

void HttpServer::stop() {
  if (http_) http_->stop();
}

}  // namespace qllm::server
