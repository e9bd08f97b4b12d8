// Host side of the CUDA INT4 quantizer: validation, device storage, error reporting, conveniences.
#include "kernels/quantize/quantize_int4.h"

#include <cstddef>

#include "kernels/quantize/quantize_int4_launch.h"
#include "qllm/error.h"

namespace qllm {

Int4DeviceMatrix::Int4DeviceMatrix(int64_t rows_, int64_t cols_, const Int4Scheme& scheme_)
    : rows(rows_), cols(cols_), scheme(scheme_) {
  const GroupLayout layout = validate_int4_shape(rows, cols, scheme);
  packed = DeviceBuffer<uint8_t>(static_cast<size_t>(rows * cols / 2), "packed int4 weights");
  scales = DeviceBuffer<uint16_t>(static_cast<size_t>(layout.num_groups), "int4 scales");
  if (scheme.zero_point) zeros = DeviceBuffer<uint8_t>(static_cast<size_t>(layout.num_groups), "int4 zeros");
}

Int4Matrix Int4DeviceMatrix::download() const {
  Int4Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.scheme = scheme;
  m.packed = packed.download();
  m.scales = scales.download();
  if (scheme.zero_point) m.zeros = zeros.download();
  return m;
}

Int4QuantizerCuda::Int4QuantizerCuda() : scratch_(sizeof(Int4QuantizeScratch), "quantizer scratch") {}

void Int4QuantizerCuda::launch(const void* weights, DType dtype, int64_t rows, int64_t cols,
                               const Int4Scheme& scheme, Int4DeviceView out, cudaStream_t stream) {
  const GroupLayout layout = validate_int4_shape(rows, cols, scheme);
  QLLM_CHECK(!scheme.min_offset,
             "CUDA INT4 [{}, {}]: qllm does not quantize to the min-offset scheme (GGUF Q4_1 is converted)",
             rows, cols);
  QLLM_CHECK(dtype == DType::F16 || dtype == DType::BF16,
             "CUDA INT4 quantization takes f16 or bf16 weights, not {}", dtype_name(dtype));
  QLLM_CHECK(is_aligned(weights, 4) && is_aligned(out.packed, 4),
             "weights and packed output must be 4-byte aligned");
  QLLM_CHECK(out.scales != nullptr && (!scheme.zero_point || out.zeros != nullptr),
             "the output needs a scales buffer{}", scheme.zero_point ? " and a zeros buffer" : "");
  QLLM_CHECK(layout.num_groups <= 0x7fffffff, "{} groups exceed the CUDA grid", layout.num_groups);
  last_layout_ = layout;

  // The scratch's starting state by two memsets (asynchronous, unlike a copy from pageable host memory):
  // all zero, then all ones for the fields that start at their largest value.
  using Scratch = Int4QuantizeScratch;
  static_assert(offsetof(Scratch, first_nonfinite) < offsetof(Scratch, max_key) &&
                    offsetof(Scratch, first_overflow) < offsetof(Scratch, max_key) &&
                    offsetof(Scratch, min_key) < offsetof(Scratch, max_key),
                "the all-ones fields (~0 indices, min_key) must come before max_key");
  QLLM_CUDA_CHECK(cudaMemsetAsync(scratch_.data(), 0, sizeof(Scratch), stream));
  QLLM_CUDA_CHECK(cudaMemsetAsync(scratch_.data(), 0xff, offsetof(Scratch, max_key), stream));
  const Int4SearchConfig config{
      scheme.zero_point, scheme.scale_dtype == DType::BF16,
      scheme.search == ScaleSearch::None ? 0 : (scheme.search == ScaleSearch::Mse ? 1 : 2)};
  kernels::launch_quantize_int4(weights, dtype == DType::BF16, rows, cols, layout, scheme.granularity, config,
                                out, reinterpret_cast<Int4QuantizeScratch*>(scratch_.data()),
                                multiprocessor_count(), stream);
  QLLM_CUDA_CHECK_LAUNCH();
}

void Int4QuantizerCuda::check(cudaStream_t stream) {
  Int4QuantizeScratch result{};
  QLLM_CUDA_CHECK(cudaMemcpyAsync(&result, scratch_.data(), sizeof(result), cudaMemcpyDeviceToHost, stream));
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (result.first_nonfinite != ~0ull) {
    const auto i = static_cast<int64_t>(result.first_nonfinite);
    fail("weight at row {}, column {} is NaN or Inf: INT4 quantization needs finite weights",
         i / last_layout_.cols, i % last_layout_.cols);
  }
  if (result.first_overflow != ~0ull) {
    const auto g = static_cast<int64_t>(result.first_overflow);
    fail("group {} (row {}): its scale overflows the scale dtype; use bf16 scales", g,
         last_layout_.row_of(g));
  }
}

void launch_dequantize_int4(const uint8_t* packed, const uint16_t* scales, const uint8_t* zeros, int64_t rows,
                            int64_t cols, const Int4Scheme& scheme, void* out, DType out_dtype,
                            cudaStream_t stream, const uint16_t* mins) {
  const GroupLayout layout = validate_int4_shape(rows, cols, scheme);
  QLLM_CHECK(!scheme.min_offset || mins != nullptr,
             "CUDA INT4 dequantize [{}, {}]: a min-offset scheme needs its "
             "minimums",
             rows, cols);
  QLLM_CHECK(out_dtype == DType::F16 || out_dtype == DType::BF16,
             "INT4 dequantization writes f16 or bf16, not {}", dtype_name(out_dtype));
  QLLM_CHECK(is_aligned(out, 16) && is_aligned(packed, 4),
             "dequantize buffers must be 16-byte (out) / 4-byte aligned");
  QLLM_CHECK(!scheme.zero_point || zeros != nullptr, "a zero-point scheme needs its zeros");
  kernels::launch_dequantize_int4(packed, scales, scheme.zero_point ? zeros : nullptr,
                                  scheme.min_offset ? mins : nullptr, layout,
                                  scheme.scale_dtype == DType::BF16, out_dtype == DType::BF16, out, stream);
  QLLM_CUDA_CHECK_LAUNCH();
}

namespace {

template <typename T>
Int4Matrix quantize_host(std::span<const T> weights, DType dtype, int64_t rows, int64_t cols,
                         const Int4Scheme& scheme) {
  QLLM_CHECK(static_cast<int64_t>(weights.size()) == rows * cols,
             "weights hold {} values, shape [{}, {}] needs {}", weights.size(), rows, cols, rows * cols);
  Int4DeviceMatrix m(rows, cols, scheme);
  m.packed.fill_bytes(0xa5);  // poison: an unwritten byte cannot pass the bit-exact comparison
  m.scales.fill_bytes(0xa5);
  if (scheme.zero_point) m.zeros.fill_bytes(0xa5);
  const auto w = to_device(weights, "weights to quantize");
  Int4QuantizerCuda quantizer;
  quantizer.launch(w.data(), dtype, rows, cols, scheme, m.view(), nullptr);
  quantizer.check(nullptr);
  return m.download();
}

template <typename T>
std::vector<T> dequantize_host(const Int4Matrix& m, DType out_dtype) {
  const auto packed = to_device(std::span<const uint8_t>(m.packed), "packed int4 weights");
  const auto scales = to_device(std::span<const uint16_t>(m.scales), "int4 scales");
  DeviceBuffer<uint8_t> zeros;
  if (m.scheme.zero_point) zeros = to_device(std::span<const uint8_t>(m.zeros), "int4 zeros");
  DeviceBuffer<uint16_t> mins;
  if (m.scheme.min_offset) mins = to_device(std::span<const uint16_t>(m.mins), "int4 minimums");
  DeviceBuffer<T> out(static_cast<size_t>(m.rows * m.cols), "dequantized weights");
  out.fill_bytes(0xff);  // poison (NaN)
  launch_dequantize_int4(packed.data(), scales.data(), zeros.data(), m.rows, m.cols, m.scheme, out.data(),
                         out_dtype, nullptr, mins.data());
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  return out.download();
}

}  // namespace

Int4Matrix quantize_int4_cuda(std::span<const Half> w, int64_t rows, int64_t cols, const Int4Scheme& scheme) {
  return quantize_host(w, DType::F16, rows, cols, scheme);
}
Int4Matrix quantize_int4_cuda(std::span<const BFloat16> w, int64_t rows, int64_t cols,
                              const Int4Scheme& scheme) {
  return quantize_host(w, DType::BF16, rows, cols, scheme);
}
std::vector<Half> dequantize_int4_to_half_cuda(const Int4Matrix& m) {
  return dequantize_host<Half>(m, DType::F16);
}
std::vector<BFloat16> dequantize_int4_to_bf16_cuda(const Int4Matrix& m) {
  return dequantize_host<BFloat16>(m, DType::BF16);
}

}  // namespace qllm
