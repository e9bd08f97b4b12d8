// Device workspace of the split-K GEMMs (W4A16 and int8 host code): fp32 partial sums [splits][M][N] and one
// arrival counter per output tile, grown on demand and kept across calls. Counters are zeroed when allocated;
// the kernels reset the ones they use, so they are zero again between launches on one stream.
#pragma once

#include <cstdint>

#include "kernels/runtime/cuda_utils.h"

namespace qllm::kernels {

class SplitKWorkspace {
 public:
  // Room for `splits` partial products of an [m, n] output cut into `tiles` output tiles; enqueues the
  // counters' zeroing on `stream` when they are (re)allocated.
  void reserve(int64_t splits, int64_t m, int64_t n, int64_t tiles, cudaStream_t stream) {
    const size_t partial_count = static_cast<size_t>(splits) * static_cast<size_t>(m * n);
    if (partials_.size() < partial_count)
      partials_ = DeviceBuffer<float>(partial_count, "split-K partial sums");
    if (counters_.size() < static_cast<size_t>(tiles)) {
      counters_ = DeviceBuffer<unsigned int>(static_cast<size_t>(tiles), "split-K counters");
      counters_.fill_bytes_async(0, stream);
    }
  }
  float* partials() { return partials_.data(); }
  unsigned int* counters() { return counters_.data(); }

 private:
  DeviceBuffer<float> partials_;
  DeviceBuffer<unsigned int> counters_;
};

}  // namespace qllm::kernels
