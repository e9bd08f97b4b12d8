#include "bench/gpu_timing.h"

#include "bench/bench_kernels.h"

#include <fmt/format.h>
#include <chrono>
#include <ctime>
#include <vector>

namespace qllm::bench {

namespace {

// One buffer of twice the L2 size, written before each timed repetition so that no input stays cached.
class L2Flusher {
 public:
  L2Flusher() {
    int device = 0, l2 = 0;
    QLLM_CUDA_CHECK(cudaGetDevice(&device));
    QLLM_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
    buffer_ = DeviceBuffer<unsigned char>(static_cast<size_t>(std::max(l2, 1 << 20)) * 2, "L2 flush buffer");
  }
  void flush(cudaStream_t stream) {
    QLLM_CUDA_CHECK(cudaMemsetAsync(buffer_.data(), ++value_ & 0xff, buffer_.bytes(), stream));
  }

 private:
  DeviceBuffer<unsigned char> buffer_;
  int value_ = 0;
};

struct Events {
  cudaEvent_t start = nullptr, stop = nullptr;
  Events() {
    QLLM_CUDA_CHECK(cudaEventCreate(&start));
    QLLM_CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~Events() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
};

}  // namespace

Timing time_cuda(const std::function<void(int)>& fn, const TimingOptions& options, cudaStream_t stream) {
  static L2Flusher flusher;  // allocated once per process
  Events events;
  for (int i = 0; i < options.warmup; ++i) fn(i);
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  QLLM_CUDA_CHECK_LAUNCH();
  std::vector<double> samples;
  samples.reserve(static_cast<size_t>(options.reps));
  for (int rep = 0; rep < options.reps; ++rep) {
    if (options.flush_l2) flusher.flush(stream);
    if (options.spacer_us > 0) spin_device(options.spacer_us, stream);
    QLLM_CUDA_CHECK(cudaEventRecord(events.start, stream));
    fn(rep);
    QLLM_CUDA_CHECK(cudaEventRecord(events.stop, stream));
    QLLM_CUDA_CHECK(cudaEventSynchronize(events.stop));
    float ms = 0;
    QLLM_CUDA_CHECK(cudaEventElapsedTime(&ms, events.start, events.stop));
    samples.push_back(ms);
  }
  QLLM_CUDA_CHECK_LAUNCH();
  return summarize(std::move(samples));
}

double measure_copy_bandwidth_gbps(size_t bytes) {
  DeviceBuffer<unsigned char> src(bytes, "copy benchmark source"), dst(bytes, "copy benchmark destination");
  src.fill_bytes(1);
  const Timing t = time_cuda(
      [&](int) { QLLM_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice)); },
      {.warmup = 3, .reps = 20, .flush_l2 = false});
  return 2.0 * static_cast<double>(bytes) / (t.median_ms * 1e-3) / 1e9;
}

std::string device_name() {
  int device = 0;
  cudaDeviceProp prop{};
  QLLM_CUDA_CHECK(cudaGetDevice(&device));
  QLLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

std::string today_iso() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  return fmt::format("{:04}-{:02}-{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

}  // namespace qllm::bench
