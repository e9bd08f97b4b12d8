// Progress of long work (loading, quantizing, perplexity) on stderr. On a terminal one line is redrawn in
// place with a bar; when stderr is a file or a pipe (CI logs, captured output) plain lines are written
// instead, one per tenth of the work, so that logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace qllm {

class Progress {
 public:
  // `label` starts every line ("loading", "perplexity"); `total` units of work; nothing is printed when
  // `enabled` is false.
  Progress(std::string label, int64_t total, bool enabled = true);
  ~Progress();  // ends a redrawn line with a newline if finish() was not called

  // `done` units finished (0..total); `detail` is appended ("ppl 23.41").
  void update(int64_t done, std::string_view detail = {});
  void finish(std::string_view detail = {});

  static bool stderr_is_terminal();

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  bool terminal_;
  bool open_line_ = false;  // a redrawn line without its newline yet
  int last_tenth_ = -1;     // plain-line mode: the last tenth printed
  std::chrono::steady_clock::time_point start_;
};

}  // namespace qllm
