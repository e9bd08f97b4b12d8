// The server's counters and latency histograms, written as Prometheus text (GET /metrics). The exposition
// format is a few lines of text per metric, so it is written here by hand rather than through a client library.
// Thread-safe: handler threads and the scheduler thread record; any thread renders.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace qllm::server {

struct SchedulerStats;

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // `name`_bucket{le=...}, `name`_sum, `name`_count.
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // [bounds + 1]: the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();

  // A finished HTTP request: its route ("/v1/chat/completions") and status.
  void count_request(const std::string& route, int status);
  // A generation request's figures (scheduler side).
  void observe_first_token(double seconds_since_submit);
  void observe_finished(double seconds_since_submit, int64_t prompt_tokens, int64_t generated_tokens,
                        const char* finish_reason);
  void observe_step(int64_t sequences, int64_t tokens, double seconds);

  // Everything, with the scheduler's gauges.
  std::string prometheus(const SchedulerStats& stats) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, uint64_t> finished_;  // by finish reason
  uint64_t prompt_tokens_ = 0;
  uint64_t generated_tokens_ = 0;
  uint64_t steps_ = 0;
  Histogram ttft_;
  Histogram latency_;
  Histogram step_seconds_;
  Histogram batch_sequences_;
  Histogram batch_tokens_;
};

}  // namespace qllm::server
