// Device workspace of the split-K GEMMs (W4A16 and int8 host code): fp32 partial sums [splits][M][N] and one
// arrival counter per output tile. reserve() allocates (and zeroes the counters) before any run; run() only
// asks for a size that was reserved, so it allocates nothing and can be captured in a CUDA graph. The
// kernels reset the counters they use, so they are zero again after every launch.
#pragma once

#include <cstdint>

#include "kernels/runtime/cuda_utils.h"
#include "qllm/error.h"

namespace qllm::kernels {

class SplitKWorkspace {
 public:
  // Room for `splits` partial products of an [m, n] output cut into `tiles` output tiles. Synchronous.
  void reserve(int64_t splits, int64_t m, int64_t n, int64_t tiles) {
    const size_t partial_count = static_cast<size_t>(splits) * static_cast<size_t>(m * n);
    if (partials_.size() < partial_count)
      partials_ = DeviceBuffer<float>(partial_count, "split-K partial sums");
    if (counters_.size() < static_cast<size_t>(tiles)) {
      counters_ = DeviceBuffer<unsigned int>(static_cast<size_t>(tiles), "split-K counters");
      counters_.fill_bytes(0);
    }
  }
  // Whether a launch of that size fits what was reserved.
  bool fits(int64_t splits, int64_t m, int64_t n, int64_t tiles) const {
    return partials_.size() >= static_cast<size_t>(splits) * static_cast<size_t>(m * n) &&
           counters_.size() >= static_cast<size_t>(tiles);
  }
  float* partials() { return partials_.data(); }
  unsigned int* counters() { return counters_.data(); }
  size_t bytes() const { return partials_.bytes() + counters_.bytes(); }

 private:
  DeviceBuffer<float> partials_;
  DeviceBuffer<unsigned int> counters_;
};

}  // namespace qllm::kernels
