// qllm serve: an OpenAI-compatible HTTP server (chat and text completions, streamed or not) with
// continuous batching over one context of the model (src/server/).
#include <fmt/format.h>

#include <pthread.h>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "qllm/error.h"
#include "server/http_server.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

namespace {

struct ServeCliOptions {
  ModelCliOptions model;
  std::string host = "127.0.0.1";
  int port = 8080;
  int64_t ctx = 4096;
  int max_batch = 16;
  int64_t batch_tokens = 0;
  int64_t prefill_chunk = 0;
  int64_t max_queue = 256;
  int max_in_flight = 256;
  size_t max_body = 1 << 20;
  std::string api_key;
  std::string alias;
};

// The model's name in the API: --alias, else the file or folder name without .gguf.
std::string model_id(const ServeCliOptions& o) {
  if (!o.alias.empty()) return o.alias;
  std::filesystem::path p(o.model.model);
  if (!p.has_filename()) p = p.parent_path();
  return p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
}

// SIGINT/SIGTERM end the server from a thread of its own (sigwait), not from a signal handler: stopping
// httplib is not async-signal-safe. They are blocked before any thread starts (OpenMP's, the scheduler's,
// httplib's), so that no other thread takes them.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// Waits for a stop signal, then ends the scheduler first (waiting requests end at once with an error, new
// ones get 503) and the HTTP server after it (its handler threads return, serve() returns).
std::thread stop_on_signal(sigset_t set, server::Scheduler& scheduler, server::HttpServer& http) {
  return std::thread([set, &scheduler, &http] {
    int signal = 0;
    sigwait(&set, &signal);
    fmt::print(stderr, "qllm serve: signal {}, stopping\n", signal);
    scheduler.stop();
    http.stop();
  });
}

void run(const ServeCliOptions& o) {
  QLLM_CHECK(o.max_batch > 0, "--max-batch must be positive, got {}", o.max_batch);
  QLLM_CHECK(o.ctx > 1, "--ctx must be at least 2, got {}", o.ctx);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up is a failed write, not the end of the server
  const sigset_t stop_signals = block_stop_signals();
  const std::string api_key =
      !o.api_key.empty() ? o.api_key : (std::getenv("QLLM_API_KEY") ? std::getenv("QLLM_API_KEY") : "");
  const LoadedModel m = load_model_from(o.model);
  const int64_t ctx = std::min<int64_t>(o.ctx, m.model->config().max_position_embeddings);
  // A step holds one decode token per sequence plus prompt chunks.
  const int64_t batch_tokens = o.batch_tokens > 0 ? o.batch_tokens : std::max<int64_t>(512, 2 * o.max_batch);
  QLLM_CHECK(batch_tokens >= o.max_batch, "--batch-tokens {} is less than --max-batch {}", batch_tokens,
             o.max_batch);
  const auto context = m.model->new_context(
      {.max_sequences = o.max_batch, .max_positions = ctx, .max_batch_tokens = batch_tokens});

  server::ServerMetrics metrics;
  server::Scheduler scheduler(
      *context,
      {.max_queue = o.max_queue, .prefill_chunk = o.prefill_chunk > 0 ? o.prefill_chunk : batch_tokens},
      &metrics);
  server::HttpServer http(m, scheduler, metrics,
                          {.host = o.host,
                           .port = o.port,
                           .api_key = api_key,
                           .model_id = model_id(o),
                           .max_body_bytes = o.max_body,
                           .max_in_flight = o.max_in_flight});
  const int port = http.bind();
  std::thread signals = stop_on_signal(stop_signals, scheduler, http);
  fmt::print(
      stderr,
      "qllm serve: model '{}' ({}, {}), {} sequences x {} positions, {} tokens a step, KV {:.1f} MiB\n",
      http.options().model_id, m.model->quantization(), m.model->device_name(), o.max_batch, ctx,
      batch_tokens, static_cast<double>(context->memory_bytes()) / (1 << 20));
  fmt::print(stderr, "qllm serve: listening on http://{}:{}{}\n", o.host, port,
             api_key.empty() ? "" : " (API key required)");
  std::fflush(stderr);
  http.serve();
  pthread_kill(signals.native_handle(),
               SIGTERM);  // ends its sigwait if serve() ended otherwise; else a no-op
  signals.join();
  scheduler.stop();
}

}  // namespace

void add_serve(CLI::App& app) {
  auto o = std::make_shared<ServeCliOptions>();
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching");
  add_model_options(*cmd, o->model);
  cmd->add_option("--host", o->host, "address to listen on (loopback by default)")->capture_default_str();
  cmd->add_option("--port", o->port, "port (0: any free port, printed)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--ctx", o->ctx, "positions of each sequence (prompt + output), at most the model's")
      ->capture_default_str();
  cmd->add_option("--max-batch", o->max_batch, "sequences decoded together (KV cache for this many x --ctx)")
      ->capture_default_str();
  cmd->add_option("--batch-tokens", o->batch_tokens,
                  "tokens of one forward pass at most (default max(512, 2 x --max-batch))");
  cmd->add_option("--prefill-chunk", o->prefill_chunk,
                  "prompt tokens per step at most (default: --batch-tokens)");
  cmd->add_option("--max-queue", o->max_queue, "requests waiting for a free sequence at most (then 503)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-in-flight", o->max_in_flight,
                  "generation requests answered at once at most (then 429)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-body", o->max_body, "request body bytes at most (then 413)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--api-key", o->api_key,
                  "require 'Authorization: Bearer KEY' on /v1/ (also $QLLM_API_KEY)");
  cmd->add_option("--alias", o->alias, "the model's name in the API (default: the file or folder name)");
  cmd->callback([o] { run(*o); });
}

}  // namespace qllm::cli
