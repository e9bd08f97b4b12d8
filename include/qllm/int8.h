// LLM.int8() (Dettmers et al. 2022, arXiv 2208.07339): vector-wise absmax int8 quantization and the
// mixed-precision decomposition of Y = X W^T. CPU reference (the spec): src/quant/int8_ref.cpp.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace qllm {

// Rows quantized to int8 with one absmax scale each: q = round(x * (127 / absmax)), clamped to [-127, 127]
// (round half to even; 127 / absmax is one float division). x' = q * absmax / 127.
struct Int8Rows {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<int8_t> values;  // [rows, cols] row-major
  std::vector<float> absmax;   // [rows]; 0 for an all-zero row (whose values are all 0)

  size_t stored_bytes() const { return values.size() + absmax.size() * sizeof(float); }
};

// Quantizes each row; columns flagged in `skip_columns` (may be empty) are left out of the absmax and stored
// as 0. Rejects NaN/Inf with the position.
Int8Rows quantize_int8_rows_ref(std::span<const float> x, int64_t rows, int64_t cols,
                                std::span<const uint8_t> skip_columns = {});
std::vector<float> dequantize_int8_rows_ref(const Int8Rows& q);

// The outlier threshold: columns of X with any |x| >= threshold are outliers. 0 or +inf disables.
constexpr float kDefaultOutlierThreshold = 6.0f;
inline bool outliers_enabled(float threshold) {
  return threshold > 0.0f && threshold < std::numeric_limits<float>::infinity();
}
// One flag per column: 1 where the column holds an outlier.
std::vector<uint8_t> outlier_columns_ref(std::span<const float> x, int64_t rows, int64_t cols,
                                         float threshold);

struct Int8GemmStats {
  int64_t outlier_columns = 0;
};

// Y [m, n] = X [m, k] @ W^T with W given as int8 rows [n, k] (per-row absmax), computed as LLM.int8() does:
// X quantized per row with the outlier columns removed, the int8 product accumulated exactly in integers and
// scaled by absmax_x[m] * absmax_w[n] / 127^2, plus the outlier columns of X times the matching columns of W
// dequantized. Double precision throughout (the spec the kernels are measured against).
std::vector<double> gemm_int8_ref(std::span<const float> x, int64_t m, const Int8Rows& w, float threshold,
                                  Int8GemmStats* stats = nullptr);

}  // namespace qllm
