// CUDA INT4 quantize and dequantize: the same bytes as the CPU reference (src/quant/int4_ref.cpp), bit for
// bit, produced by memory-bound kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <span>

#include "kernels/runtime/cuda_utils.h"
#include "qllm/quant.h"

namespace qllm {

// Device pointers of a quantized matrix in the canonical layout of docs/FORMATS.md.
struct Int4DeviceView {
  uint8_t* packed = nullptr;   // rows * cols / 2 bytes
  uint16_t* scales = nullptr;  // one per group
  uint8_t* zeros = nullptr;    // one per group, only with a zero point
};

// Device storage for one quantized matrix.
struct Int4DeviceMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  Int4Scheme scheme;
  DeviceBuffer<uint8_t> packed;
  DeviceBuffer<uint16_t> scales;
  DeviceBuffer<uint8_t> zeros;

  Int4DeviceMatrix() = default;
  Int4DeviceMatrix(int64_t rows, int64_t cols, const Int4Scheme& scheme);  // allocates
  Int4DeviceView view() { return {packed.data(), scales.data(), zeros.data()}; }
  Int4Matrix download() const;
};

// Device-side error flags and cross-block state of a quantizer launch (defined in quantize_int4.cu).
struct Int4QuantizeScratch;

// Quantizes on the GPU. launch() only enqueues work: several launches can be timed back to back.
// check() waits for the stream and throws qllm::Error if the weights held NaN/Inf or a scale overflowed.
class Int4QuantizerCuda {
 public:
  Int4QuantizerCuda();
  void launch(const void* weights, DType dtype, int64_t rows, int64_t cols, const Int4Scheme& scheme,
              Int4DeviceView out, cudaStream_t stream);
  void check(cudaStream_t stream);

 private:
  DeviceBuffer<unsigned char> scratch_;     // one Int4QuantizeScratch
  GroupLayout last_layout_{1, 1, 1, 1, 1};  // of the last launch: check() names rows and groups with it
};

// w' = (q - z) * s written as fp16 or bf16 (out_dtype), [rows, cols] row-major; min offset (GGUF Q4_1):
// q * s + m with `mins` (one per group, in the scale dtype), f32 as ggml computes it, then rounded once.
void launch_dequantize_int4(const uint8_t* packed, const uint16_t* scales, const uint8_t* zeros, int64_t rows,
                            int64_t cols, const Int4Scheme& scheme, void* out, DType out_dtype,
                            cudaStream_t stream, const uint16_t* mins = nullptr);

// Host-to-host conveniences for tests and tools: upload, run, check, download.
Int4Matrix quantize_int4_cuda(std::span<const Half> weights, int64_t rows, int64_t cols,
                              const Int4Scheme& scheme);
Int4Matrix quantize_int4_cuda(std::span<const BFloat16> weights, int64_t rows, int64_t cols,
                              const Int4Scheme& scheme);
std::vector<Half> dequantize_int4_to_half_cuda(const Int4Matrix& matrix);
std::vector<BFloat16> dequantize_int4_to_bf16_cuda(const Int4Matrix& matrix);

}  // namespace qllm
