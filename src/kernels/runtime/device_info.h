// What GPU (if any) this process can use. Callable from CPU-only builds, where no device is ever found.
#pragma once

#include <cstddef>
#include <string>

namespace qllm {

struct DeviceInfo {
  bool available = false;
  std::string name;  // e.g. "NVIDIA H100 80GB HBM3"
  int compute_major = 0;
  int compute_minor = 0;
  int multiprocessors = 0;
  size_t l2_bytes = 0;
  size_t global_memory_bytes = 0;
  std::string reason;  // why no device is available
};

DeviceInfo query_device();  // device 0

}  // namespace qllm
