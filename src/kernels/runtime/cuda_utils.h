// CUDA runtime helpers for host code: checked calls, owning device buffers with clear out-of-memory errors.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "qllm/error.h"

// Throws qllm::Error naming the failed call, its error and the source location.
#define QLLM_CUDA_CHECK(call) ::qllm::check_cuda((call), #call, __FILE__, __LINE__)

// After a kernel launch: reports bad launch configurations at once.
#define QLLM_CUDA_CHECK_LAUNCH() QLLM_CUDA_CHECK(cudaGetLastError())

namespace qllm {

void check_cuda(cudaError_t status, const char* expression, const char* file, int line);
[[noreturn]] void fail_buffer_too_small(size_t needed, size_t capacity);

// Rounded-up integer division (grid sizes, tile counts).
constexpr int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
inline bool is_aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// Streaming multiprocessors of the current device (queried once per device).
int multiprocessor_count();
// The most dynamic shared memory a kernel may opt in to on the current device (queried once per device).
int max_dynamic_shared_memory();
// Lets `kernel` take as much dynamic shared memory as the device allows beside its static shared memory.
void allow_all_dynamic_shared_memory(const void* kernel);

// A yes/no property of the current device, asked once per device (thread-safe): `static PerDeviceFlag f;
// return f.get([](int device) { ... });`. No current device (or an error asking which) reads as no.
class PerDeviceFlag {
 public:
  template <typename Query>
  bool get(Query&& query) {
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return false;
    int state = known_[device].load(std::memory_order_relaxed);  // 0 not asked yet, 1 no, 2 yes
    if (state == 0) {
      state = query(device) ? 2 : 1;
      known_[device].store(state, std::memory_order_relaxed);
    }
    return state == 2;
  }

 private:
  static constexpr int kMaxDevices = 64;
  std::atomic<int> known_[kMaxDevices] = {};
};

// Whether the sm_90a kernels (wgmma, TMA) can run: an sm_90 GPU is current and this build compiled them for
// sm_90a. Queried once per device. Defined with those kernels (gemm_w4a16_wgmma.cu).
bool sm90a_kernels_available();

// Whether the current device runs programmatic dependent launches (compute capability 9.0+): launches then
// add cudaLaunchAttributeProgrammaticStreamSerialization (see dependent_launch.cuh). The environment variable
// QLLM_DEPENDENT_LAUNCH=0 turns them off (every launch plainly ordered), to measure what they save.
bool dependent_launch_available();
// That attribute: the kernel may be scheduled while the one before it in the stream still runs.
inline cudaLaunchAttribute dependent_launch_attribute() {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  return attribute;
}

// cudaMalloc that reports how much was asked for, for what, and how much is free.
void* device_alloc(size_t bytes, const char* what);

// cudaMallocHost that names what it was for when it fails.
void* pinned_alloc(size_t bytes, const char* what);

// An owning, move-only device array of T (uninitialised).
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count, const char* what = "buffer")
      : data_(static_cast<T*>(device_alloc(count * sizeof(T), what))), count_(count) {}
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept { swap(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    DeviceBuffer(std::move(other)).swap(*this);
    return *this;
  }
  ~DeviceBuffer() {
    if (data_) cudaFree(data_);
  }

  T* data() const { return data_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

  void upload(std::span<const T> host) {
    if (host.size() > count_) fail_buffer_too_small(host.size(), count_);
    QLLM_CUDA_CHECK(cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    QLLM_CUDA_CHECK(cudaMemcpy(host.data(), data_, bytes(), cudaMemcpyDeviceToHost));
    return host;
  }
  // Fills every byte with `value`: tests poison outputs so that unwritten elements show.
  void fill_bytes(int value) { QLLM_CUDA_CHECK(cudaMemset(data_, value, bytes())); }
  void fill_bytes_async(int value, cudaStream_t stream) {
    QLLM_CUDA_CHECK(cudaMemsetAsync(data_, value, bytes(), stream));
  }

 private:
  void swap(DeviceBuffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
  }
  T* data_ = nullptr;
  size_t count_ = 0;
};

// Host memory the GPU copies from and to asynchronously (pageable memory would make each copy synchronous).
template <typename T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(size_t count, const char* what)
      : data_(count ? static_cast<T*>(pinned_alloc(count * sizeof(T), what)) : nullptr), count_(count) {}
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    return *this;
  }
  ~PinnedBuffer() {
    if (data_) cudaFreeHost(data_);
  }
  T* data() const { return data_; }
  size_t size() const { return count_; }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
};

template <typename T>
DeviceBuffer<T> to_device(std::span<const T> host, const char* what = "buffer") {
  DeviceBuffer<T> buffer(host.size(), what);
  buffer.upload(host);
  return buffer;
}

}  // namespace qllm
