// QuantLinear: staging and quantization at load, and the dispatch to the three GEMMs.
#include "kernels/gemm/quant_linear.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/gemm/pad_copy.h"
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
// (their own dtype), f32 sources rounded to the activation dtype (as model/cpu_linear.cpp does), in rows of
// `cols` >= w.cols values (zeros past w.cols) and `rows` >= w.rows rows (zero rows past w.rows).
std::vector<uint16_t> staged_16bit(const HostWeight& w, DType activation, DType& staged_dtype, int64_t rows,
                                   int64_t cols) {
  std::vector<uint16_t> out(static_cast<size_t>(rows * cols), 0);  // +0 in bf16 and f16 alike
  staged_dtype = w.dtype == DType::F32 ? activation : w.dtype;
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int64_t c = 0; c < w.cols; ++c) {
      const auto i = static_cast<size_t>(r * w.cols + c);
      out[static_cast<size_t>(r * cols + c)] = w.dtype == DType::F32
                                                   ? round_to_16(element(w, i), activation)
                                                   : static_cast<const uint16_t*>(w.data)[i];
    }
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
                                 const Int4Scheme& scheme, std::span<const int64_t> parts,
                                 cudaStream_t stream) {
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
    const Int4Matrix part =
        quantize_on_gpu(staged.data() + first * cols, dtype, part_rows, cols, scheme, stream);
    std::copy(part.packed.begin(), part.packed.end(), out.packed.begin() + first * cols / 2);
    for (int64_t r = first; r < first + part_rows; ++r) {
      out.scales[static_cast<size_t>(r)] = part.scales[0];
      if (scheme.zero_point) out.zeros[static_cast<size_t>(r)] = part.zeros[0];
    }
    first += part_rows;
  }
  return out;
}

int64_t round_up_64(int64_t v) {
  return (v + 63) / 64 * 64;
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
  switch (mode.kind) {
    case QuantMode::Kind::Dense: {  // cuBLASLt takes any N and K
      QLLM_CHECK(mode.dense_dtype == activation,
                 "QuantLinear: {} weights with {} activations (they must match)",
                 dtype_name(mode.dense_dtype), dtype_name(activation));
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
    case QuantMode::Kind::Int4: {  // any N and even K: the W4A16 layout pads itself (quant/w4a16_layout.h)
      QLLM_CHECK(w.cols % 2 == 0, "QuantLinear: weight [{}, {}]: INT4 needs an even K (two weights per byte)",
                 w.rows, w.cols);
      Int4Scheme scheme = mode.int4;
      scheme.scale_dtype = activation;
      DType staged_dtype = activation;
      const std::vector<uint16_t> staged = staged_16bit(w, activation, staged_dtype, n_, k_);
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
      // The int8 kernels take N and K in multiples of 64: the weight is zero-padded to that (zero columns
      // leave each row's absmax, and so every real value, as the CPU reference has it; zero rows give zero
      // outputs that forward() does not hand out).
      int8_n_ = round_up_64(n_);
      int8_k_ = round_up_64(k_);
      DType staged_dtype = activation;
      const std::vector<uint16_t> staged = staged_16bit(w, activation, staged_dtype, int8_n_, int8_k_);
      DeviceBuffer<uint16_t> source = to_device(std::span<const uint16_t>(staged), "int8 staging weights");
      int8_ = quantize_int8_weights_cuda(source.data(), staged_dtype, int8_n_, int8_k_, stream);
      break;
    }
  }
}

QuantLinear::QuantLinear(const Int4Matrix& w, DType activation)
    : activation_(activation), n_(w.rows), k_(w.cols) {
  QLLM_CHECK(activation == DType::BF16 || activation == DType::F16,
             "QuantLinear: activations are bf16 or f16, not {}", dtype_name(activation));
  QLLM_CHECK(w.rows > 0 && w.cols > 0 && w.rows <= INT32_MAX && w.cols <= INT32_MAX,
             "QuantLinear: INT4 weight [{}, {}] empty or too large", w.rows, w.cols);
  validate_int4_matrix(w, fmt::format("QuantLinear: INT4 weight [{}, {}]", w.rows, w.cols));
  QLLM_CHECK(w.scheme.scale_dtype == activation,
             "QuantLinear: INT4 weight [{}, {}] has {} scales but the activations are {}: the kernels read "
             "scales in the activation dtype (run with {} activations, or re-quantize)",
             w.rows, w.cols, dtype_name(w.scheme.scale_dtype), dtype_name(activation),
             dtype_name(w.scheme.scale_dtype));
  mode_.kind = QuantMode::Kind::Int4;
  mode_.int4 = w.scheme;
  // w4a16_layout_for (inside the repack) refuses what the kernels cannot tile, naming the shape.
  int4_ = W4A16DeviceWeights::upload(repack_w4a16(w, activation));
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
    executor.int8.reserve(int8_n_, int8_k_, max_tokens);
    auto grow = [&](DeviceBuffer<uint16_t>& buffer, int64_t cols, const char* what) {
      if (buffer.size() < static_cast<size_t>(max_tokens * cols))
        buffer = DeviceBuffer<uint16_t>(static_cast<size_t>(max_tokens * cols), what);
    };
    if (int8_k_ != k_) grow(executor.x_pad, int8_k_, "zero-padded activations (int8, K % 64 != 0)");
    if (int8_n_ != n_) grow(executor.y_pad, int8_n_, "padded outputs (int8, N % 64 != 0)");
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
    // Through the executor's padding workspaces where the shape is not whole 64-tiles: X into rows of the
    // padded K (zeros: no outliers, no change to a token's absmax), Y out of rows of the padded N.
    const void* x_in = x;
    void* y_out = y;
    if (int8_k_ != k_) {
      kernels::launch_copy_rows_16(x, k_, executor.x_pad.data(), int8_k_, m, k_, stream);
      x_in = executor.x_pad.data();
    }
    if (int8_n_ != n_) y_out = executor.y_pad.data();
    executor.int8.threshold = mode_.int8_threshold;
    executor.int8.run(x_in, *int8_, y_out, m, activation_, stream);
    if (int8_n_ != n_) kernels::launch_copy_rows_16(y_out, int8_n_, y, n_, m, n_, stream);
  } else {
    executor.cublas.run(x, dense_.data(), y, m, n_, k_, activation_, stream);
  }
}

bool QuantLinear::forward_fused(GemmExecutor& executor, const XPrologue& prologue, void* y, int64_t m,
                                cudaStream_t stream) const {
  QLLM_CHECK(m >= 1 && m <= executor.reserved_tokens,
             "QuantLinear [{}, {}]: {} tokens, reserved for at most {} (call reserve() first)", n_, k_, m,
             executor.reserved_tokens);
  return int4_ && executor.w4a16.run_fused(prologue, *int4_, y, m, stream);
}

}  // namespace qllm
