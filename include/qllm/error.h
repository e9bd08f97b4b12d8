// Errors: every failure qllm reports is a qllm::Error whose message names the offending file, field,
// shape or value. Tools print the message and exit non-zero; nothing is reported as success after one.
#pragma once

#include <stdexcept>
#include <string>

#if !defined(__CUDACC__)
#include <fmt/format.h>
#endif

namespace qllm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Formatted errors are for host C++ files only: nvcc cannot compile fmt's compile-time format checks, so
// .cu files hold kernels and launchers, and their callers in .cpp files validate and report.
#if !defined(__CUDACC__)
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}
#endif

}  // namespace qllm

#if !defined(__CUDACC__)
// QLLM_CHECK(condition, "format {}", args...): throws qllm::Error with the formatted message.
#define QLLM_CHECK(condition, ...) \
  do {                             \
    if (!(condition)) {            \
      ::qllm::fail(__VA_ARGS__);   \
    }                              \
  } while (0)
#endif
