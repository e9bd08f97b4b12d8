// QuantLinear: staging and quantization at load, and the dispatch to the three GEMMs.
#include "kernels/gemm/quant_linear.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/quantize/quantize_int4.h"
#include "qllm/error.h"
#include "qllm/half.h"
#include "quant/w4a16_layout.h"

namespace qllm {

namespace {

uint16_t round_to_16(float value, DType dtype) {
  return dtype == DType::BF16 ? float_to_bf16_bits(value) : float_to_half_bits(value);
}

float value_of_16(uint16_t bits, DType dtype) {
  return dtype == DType::BF16 ? bf16_bits_to_float(bits) : half_bits_to_float(bits);
}

float element(const HostWeight& w, size_t i) {
  switch (w.dtype) {
    case DType::F32:
      return static_cast<const float*>(w.data)[i];
    case DType::BF16:
      return bf16_bits_to_float(static_cast<const uint16_t*>(w.data)[i]);
    default:
      return half_bits_to_float(static_cast<const uint16_t*>(w.data)[i]);
  }
}

// The weight as 16-bit values on the host, the form the GPU quantizers read: 16-bit sources as they are
// (their own dtype), f32 sources rounded to the activation dtype (as model/cpu_linear.cpp does).
std::vector<uint16_t> staged_16bit(const HostWeight& w, DType activation, DType& staged_dtype) {
  const size_t count = static_cast<size_t>(w.rows * w.cols);
  std::vector<uint16_t> out(count);
  if (w.dtype == DType::F32) {
    staged_dtype = activation;
    for (size_t i = 0; i < count; ++i) out[i] = round_to_16(element(w, i), activation);
  } else {
    staged_dtype = w.dtype;
    const auto* src = static_cast<const uint16_t*>(w.data);
    out.assign(src, src + count);
  }
  return out;
}

// Quantizes [rows, cols] 16-bit host values on the GPU (the staging freed before returning).
Int4Matrix quantize_on_gpu(const uint16_t* values, DType dtype, int64_t rows, int64_t cols,
                           const Int4Scheme& scheme, cudaStream_t stream) {
  DeviceBuffer<uint16_t> source =
      to_device(std::span<const uint16_t>(values, static_cast<size_t>(rows * cols)), "int4 staging weights");
  Int4DeviceMatrix quantized(rows, cols, scheme);
  Int4QuantizerCuda quantizer;
  quantizer.launch(source.data(), dtype, rows, cols, scheme, quantized.view(), stream);
  quantizer.check(stream);
  return quantized.download();
}

// GLOBAL over a fused projection: each part quantized with its own scale (as the CPU reference quantizes the
// checkpoint's separate tensors), stored as ROWWISE rows that repeat their part's scale (the W4A16 layout
// keeps one scale per row in both cases, so the kernels see the same thing).
Int4Matrix quantize_global_parts(const std::vector<uint16_t>& staged, DType dtype, int64_t cols,
                                 const Int4Scheme& scheme, std::span<const int64_t> parts, cudaStream_t stream) {
  Int4Scheme rowwise = scheme;
  rowwise.granularity = Granularity::Rowwise;
  const auto rows = static_cast<int64_t>(staged.size()) / cols;
  Int4Matrix out;
  out.rows = rows;
  out.cols = cols;
  out.scheme = rowwise;
  out.packed.resize(static_cast<size_t>(rows * cols / 2));
  out.scales.resize(static_cast<size_t>(rows));
  if (scheme.zero_point) out.zeros.resize(static_cast<size_t>(rows));
  int64_t first = 0;
  for (const int64_t part_rows : parts) {
    const Int4Matrix part = quantize_on_gpu(staged.data() + first * cols, dtype, part_rows, cols, scheme, stream);
    std::copy(part.packed.begin(), part.packed.end(), out.packed.begin() + first * cols / 2);
    for (int64_t r = first; r < first + part_rows; ++r) {
      out.scales[static_cast<size_t>(r)] = part.scales[0];
      if (scheme.zero_point) out.zeros[static_cast<size_t>(r)] = part.zeros[0];
    }
    first += part_rows;
  }
  return out;
}

}  // namespace

QuantLinear::QuantLinear(const HostWeight& w, const QuantMode& mode, DType activation, cudaStream_t stream)
    : mode_(mode), activation_(activation), n_(w.rows), k_(w.cols) {
  QLLM_CHECK(activation == DType::BF16 || activation == DType::F16,
             "QuantLinear: activations are bf16 or f16, not {}", dtype_name(activation));
  QLLM_CHECK(w.data != nullptr && w.rows > 0 && w.cols > 0 && w.rows <= INT32_MAX && w.cols <= INT32_MAX,
             "QuantLinear: weight [{}, {}] empty or too large", w.rows, w.cols);
  QLLM_CHECK(w.dtype == DType::F32 || w.dtype == DType::BF16 || w.dtype == DType::F16,
             "QuantLinear: weights are f32, bf16 or f16, not {}", dtype_name(w.dtype));
  QLLM_CHECK(w.cols % 8 == 0,
             "QuantLinear: weight [{}, {}]: K must be a multiple of 8 (16-byte activation rows)", w.rows,
             w.cols);
  switch (mode.kind) {
    case QuantMode::Kind::Dense: {
      QLLM_CHECK(mode.dense_dtype == activation,
                 "QuantLinear: {} weights with {} activations (they must match)",
                 dtype_name(mode.dense_dtype), dtype_name(activation));
      QLLM_CHECK(w.rows % 8 == 0,
                 "QuantLinear: weight [{}, {}]: N must be a multiple of 8 (16-byte output rows)", w.rows,
                 w.cols);
      // Rounded on the host (f32 sources through the activation dtype, as the CPU reference does).
      std::vector<uint16_t> values(static_cast<size_t>(n_ * k_));
      for (size_t i = 0; i < values.size(); ++i) {
        float v = element(w, i);
        if (w.dtype == DType::F32) v = value_of_16(round_to_16(v, activation), activation);
        values[i] = round_to_16(v, mode.dense_dtype);
        QLLM_CHECK(std::isfinite(value_of_16(values[i], mode.dense_dtype)),
                   "QuantLinear: weight {} at [{}, {}] does not fit in {}", v, static_cast<int64_t>(i) / k_,
                   static_cast<int64_t>(i) % k_, dtype_name(mode.dense_dtype));
      }
      dense_ = to_device(std::span<const uint16_t>(values), "dense weights");
      break;
    }
    case QuantMode::Kind::Int4: {
      Int4Scheme scheme = mode.int4;
      scheme.scale_dtype = activation;
      DType staged_dtype = activation;
      const std::vector<uint16_t> staged = staged_16bit(w, activation, staged_dtype);
      int64_t part_total = 0;
      for (const int64_t rows : w.parts) part_total += rows;
      QLLM_CHECK(w.parts.empty() || part_total == n_, "QuantLinear: parts of {} rows for a weight of {} rows",
                 part_total, n_);
      // The staging is freed before the repacked weights are uploaded.
      const Int4Matrix host = scheme.granularity == Granularity::Global && w.parts.size() > 1
                                  ? quantize_global_parts(staged, staged_dtype, k_, scheme, w.parts, stream)
                                  : quantize_on_gpu(staged.data(), staged_dtype, n_, k_, scheme, stream);
      // The repack to the kernels' layout runs on the host (quant/w4a16_layout.h), a few ms per layer.
      int4_ = W4A16DeviceWeights::upload(repack_w4a16(host, activation));
      break;
    }
    case QuantMode::Kind::Int8: {
      DType staged_dtype = activation;
      const std::vector<uint16_t> staged = staged_16bit(w, activation, staged_dtype);
      DeviceBuffer<uint16_t> source = to_device(std::span<const uint16_t>(staged), "int8 staging weights");
      int8_ = quantize_int8_weights_cuda(source.data(), staged_dtype, n_, k_, stream);
      break;
    }
  }
}

uint64_t QuantLinear::weight_bytes() const {
  if (int4_) return int4_->bytes();
  if (int8_) return int8_->bytes();
  return dense_.bytes();
}

void QuantLinear::reserve(GemmExecutor& executor, int64_t max_tokens) const {
  QLLM_CHECK(max_tokens >= 1 && max_tokens <= INT32_MAX / 2, "QuantLinear: reserve for {} tokens",
             max_tokens);
  if (int4_) {
    executor.w4a16.reserve(int4_->layout, max_tokens);
  } else if (int8_) {
    executor.int8.reserve(n_, k_, max_tokens);
  }
  executor.reserved_tokens = std::max(executor.reserved_tokens, max_tokens);
}

void QuantLinear::forward(GemmExecutor& executor, const void* x, void* y, int64_t m,
                          cudaStream_t stream) const {
  QLLM_CHECK(m >= 1 && m <= executor.reserved_tokens,
             "QuantLinear [{}, {}]: {} tokens, reserved for at most {} (call reserve() first)", n_, k_, m,
             executor.reserved_tokens);
  if (int4_) {
    executor.w4a16.run(x, *int4_, y, m, stream);
  } else if (int8_) {
    executor.int8.threshold = mode_.int8_threshold;
    executor.int8.run(x, *int8_, y, m, activation_, stream);
  } else {
    executor.cublas.run(x, dense_.data(), y, m, n_, k_, activation_, stream);
  }
}

}  // namespace qllm
