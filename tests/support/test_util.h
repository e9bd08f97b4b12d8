// Helpers shared by the CPU and GPU tests.
#pragma once

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "core/random.h"
#include "kernels/runtime/device_info.h"
#include "qllm/error.h"

namespace qllm::testing {

// GPU tests call this first: without a device they are reported as skipped, with the reason.
#define QLLM_SKIP_WITHOUT_GPU()                                                             \
  do {                                                                                      \
    static const ::qllm::DeviceInfo qllm_device_ = ::qllm::query_device();                  \
    if (!qllm_device_.available) GTEST_SKIP() << "no CUDA device: " << qllm_device_.reason; \
  } while (0)

// A fresh seed per call, so that every test case draws new inputs; printed on failure via SCOPED_TRACE.
inline uint64_t fresh_seed() {
  static uint64_t counter = static_cast<uint64_t>(std::random_device{}());
  return ++counter * 0x9e3779b97f4a7c15ull;
}

template <typename T>
std::vector<T> random_normal(size_t n, Rng& rng, double stddev = 1.0) {
  std::vector<T> v(n);
  fill_normal(std::span<T>(v), rng, 0.0, stddev);
  return v;
}

// The message of the qllm::Error that `fn` throws, or "no error" when it returns normally.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Runs a shell command; returns its exit status and everything it printed (stdout and stderr).
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
inline CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) r.output.append(buffer, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A fresh, empty directory under the system temp folder, removed with everything in it on destruction.
// The one class of this name for all tests (an inline class defined differently in two headers is an ODR
// violation that the linker does not report).
class TempDir {
 public:
  TempDir() {
    // The pid and a counter keep names apart within this machine; the random part keeps them apart from
    // processes of other containers sharing /tmp. create_directory() is false for an existing path, so a
    // leftover folder of an earlier run is never reused.
    static std::atomic<unsigned> counter{0};
    std::random_device random;
    do {
      path_ = std::filesystem::temp_directory_path() /
              ("qllm-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
               std::to_string(random()));
    } while (!std::filesystem::create_directory(path_));
  }
  ~TempDir() {
    std::error_code ignored;  // a destructor must not throw; a leftover in /tmp is harmless
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  // The path of `name` inside the directory (the file need not exist).
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  // Writes `contents` (binary, replacing any earlier contents) to `name` inside the directory.
  std::filesystem::path write(const std::string& name, const std::string& contents) const {
    const auto file = path_ / name;
    std::ofstream(file, std::ios::binary) << contents;
    return file;
  }

 private:
  std::filesystem::path path_;
};

// Largest |a - b| relative to the largest |b|.
inline double relative_diff(std::span<const float> a, std::span<const float> b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return diff / scale;  // NaN when any value is NaN: fails every < bound
}

// Path of the shared data folder (../shared beside the checkout, or $QLLM_SHARED); empty when absent.
std::string shared_dir();

}  // namespace qllm::testing
