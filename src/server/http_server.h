// The HTTP front of `qllm serve`: OpenAI's routes on cpp-httplib (Debian's libcpp-httplib-dev), one handler
// thread per connection, each talking to the scheduler only through its Job (server/scheduler.h).
//   POST /v1/chat/completions, POST /v1/completions (stream: true gives server-sent events ending in
//   "data: [DONE]"), GET /v1/models, GET /health, GET /metrics (Prometheus text).
// Every error is OpenAI's {"error": {...}} with its status: 400 bad JSON, types or values, a prompt longer
// than the context; 401 a wrong or missing API key (when one is set); 404 an unknown model or route; 413 a
// body over the limit; 429 too many requests in flight; 503 the scheduler's queue is full (Retry-After).
// httplib.h is included only by the .cpp: it must be compiled with the distribution's CPPHTTPLIB_* flags.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include "engine/load_model.h"
#include "server/metrics.h"
#include "server/scheduler.h"

namespace httplib {
class Server;
}

namespace qllm::server {

struct HttpOptions {
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 8080;                 // 0: any free port (bind() returns it)
  std::string api_key;             // empty: no authentication
  std::string model_id;            // the name /v1/models lists and requests must use (or leave out)
  size_t max_body_bytes = 1 << 20;
  int max_in_flight = 256;  // generation requests being answered at once; more are refused with 429
  int retry_after_seconds = 2;
};

class HttpServer {
 public:
  // `model` (tokenizer, chat template, stop ids) and `scheduler` (over a context of that model) outlive this.
  HttpServer(const LoadedModel& model, Scheduler& scheduler, ServerMetrics& metrics, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the address; returns the port. qllm::Error when it cannot (in use, bad host).
  int bind();
  // Serves until stop() (from another thread).
  void serve();
  void stop();

  const HttpOptions& options() const { return options_; }

 private:
  class Handlers;

  const LoadedModel& model_;
  Scheduler& scheduler_;
  ServerMetrics& metrics_;
  HttpOptions options_;
  int64_t context_positions_;
  std::atomic<int> in_flight_{0};
  int listen_socket_ = -1;  // the bound socket (httplib's), for its backlog
  std::unique_ptr<httplib::Server> http_;
  std::unique_ptr<Handlers> handlers_;
};

}  // namespace qllm::server
