// GPU timing as device/METHOD.md asks: CUDA events around each repetition, warm-up first, the median of
// many repetitions, and the L2 cache flushed (or the inputs rotated) so that memory, not the cache, is timed.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <string>

#include "bench/stats.h"
#include "kernels/runtime/cuda_utils.h"

namespace qllm::bench {

struct TimingOptions {
  int warmup = 5;
  int reps = 50;
  bool flush_l2 = true;  // write a buffer of twice the L2 size before each repetition (outside the events)
  double spacer_us = 0;  // busy the GPU this long before each repetition, so that the host's enqueueing of
                         // the timed work never shows up as idle time between the events
};

// Times fn(rep) on `stream`; fn must only enqueue work on that stream.
Timing time_cuda(const std::function<void(int rep)>& fn, const TimingOptions& options,
                 cudaStream_t stream = nullptr);

// Device-to-device copy of a buffer much larger than L2: bytes read + written per second (the ceiling that
// memory-bound kernels are compared with).
double measure_copy_bandwidth_gbps(size_t bytes = size_t{1} << 30);

// "NVIDIA H100 80GB HBM3" and today's date, for every results table.
std::string device_name();
std::string today_iso();

}  // namespace qllm::bench
