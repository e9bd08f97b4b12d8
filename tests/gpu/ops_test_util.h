// Helpers shared by the op-harness rows of the small ops (test_ops_norm/elementwise/sampling.cpp): a
// stream, uploads, and random 16-bit data in either activation dtype.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "core/random.h"
#include "kernels/runtime/cuda_utils.h"
#include "qllm/dtype.h"
#include "qllm/half.h"

namespace qllm::testing {

class TestStream {
 public:
  TestStream() { QLLM_CUDA_CHECK(cudaStreamCreate(&stream_)); }
  ~TestStream() { cudaStreamDestroy(stream_); }
  TestStream(const TestStream&) = delete;
  TestStream& operator=(const TestStream&) = delete;
  cudaStream_t get() const { return stream_; }
  void sync() const { QLLM_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

template <typename T>
DeviceBuffer<T> to_device(const std::vector<T>& host) {
  DeviceBuffer<T> buffer(std::max<size_t>(host.size(), 1));
  buffer.upload(host);
  return buffer;
}

inline const char* dtype_label(DType dtype) {
  return dtype == DType::BF16 ? "bf16" : "f16";
}
inline uint16_t float_to_bits16(float v, DType dtype) {
  return dtype == DType::BF16 ? float_to_bf16_bits(v) : float_to_half_bits(v);
}
inline float bits16_to_float(uint16_t b, DType dtype) {
  return dtype == DType::BF16 ? bf16_bits_to_float(b) : half_bits_to_float(b);
}
inline std::vector<uint16_t> random_bits16(size_t n, Rng& rng, DType dtype, double scale = 1.0) {
  std::vector<uint16_t> out(n);
  for (auto& b : out) b = float_to_bits16(static_cast<float>(scale * rng.normal()), dtype);
  return out;
}
inline std::vector<float> bits16_to_floats(const std::vector<uint16_t>& bits, DType dtype) {
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = bits16_to_float(bits[i], dtype);
  return out;
}

}  // namespace qllm::testing
