// `qllm quantize` on the GPU: one weight at a time through the CUDA INT4 quantizer, which gives the CPU
// reference quantizer's bits (docs/FORMATS.md), so the output does not depend on where it was made.
#include <cuda_runtime.h>

#include <vector>

#include "kernels/quantize/quantize_int4.h"
#include "kernels/runtime/cuda_utils.h"
#include "model/llama_weights.h"
#include "model/prequantized.h"
#include "qllm/half.h"

namespace qllm {

Int4Matrix quantize_weight_int4_cuda(const WeightMatrix& w, const Int4Scheme& scheme, DType activation) {
  Int4Scheme s = scheme;
  s.scale_dtype = activation;
  const auto count = static_cast<size_t>(w.rows * w.cols);
  // The values quantize_weight_int4 reads: a 16-bit source as it is (uploaded straight from the mapping),
  // anything else (f32, a reconstruction) rounded to the activation dtype.
  std::vector<uint16_t> staged;
  const uint16_t* source = nullptr;
  DType dtype = activation;
  if (!w.quantized() && w.dtype != DType::F32) {
    source = static_cast<const uint16_t*>(w.data);
    dtype = w.dtype;
  } else {
    const std::vector<float> values = quantizer_source(w, activation);
    staged.resize(count);
    for (size_t i = 0; i < count; ++i)
      staged[i] = activation == DType::BF16 ? float_to_bf16_bits(values[i]) : float_to_half_bits(values[i]);
    source = staged.data();
  }
  const DeviceBuffer<uint16_t> device =
      to_device(std::span<const uint16_t>(source, count), "weights to quantize");
  Int4DeviceMatrix quantized(w.rows, w.cols, s);
  Int4QuantizerCuda quantizer;
  quantizer.launch(device.data(), dtype, w.rows, w.cols, s, quantized.view(), nullptr);
  quantizer.check(nullptr);
  return quantized.download();
}

}  // namespace qllm
