#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace qllm {

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 1)),
      enabled_(enabled),
      terminal_(stderr_is_terminal()),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() {
  if (open_line_) fmt::print(stderr, "\n");
}

bool Progress::stderr_is_terminal() {
  return isatty(fileno(stderr)) == 1;
}

void Progress::update(int64_t done, std::string_view detail) {
  if (!enabled_) return;
  done = std::clamp<int64_t>(done, 0, total_);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::string suffix = detail.empty() ? std::string() : fmt::format("  {}", detail);
  if (terminal_) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * done / total_);
    fmt::print(stderr, "\r{} [{}{}] {}/{} {:.1f}s{}\x1b[K", label_, std::string(filled, '#'),
               std::string(kWidth - filled, '.'), done, total_, seconds, suffix);
    open_line_ = true;
    std::fflush(stderr);
    return;
  }
  const int tenth = static_cast<int>(10 * done / total_);
  if (tenth == last_tenth_) return;
  last_tenth_ = tenth;
  fmt::print(stderr, "{}: {}/{} ({}%) {:.1f}s{}\n", label_, done, total_, 100 * done / total_, seconds,
             suffix);
}

void Progress::finish(std::string_view detail) {
  if (!enabled_) return;
  if (!detail.empty()) last_tenth_ = -1;  // a plain-line log gets the closing detail even after its 100% line
  update(total_, detail);
  if (open_line_) fmt::print(stderr, "\n");
  open_line_ = false;
}

}  // namespace qllm
