// Output-aware clipping (clip_search_ref.h): plain loops, groups in parallel.
#include "quant/clip_search_ref.h"

#include <cmath>
#include <limits>

#include "qllm/error.h"
#include "quant/gptq_ref.h"
#include "quant/int4_groups.h"

namespace qllm {

namespace {

// NaN or Inf would pass through the min/max and the rounding silently.
void check_finite(std::span<const float> values, int64_t cols, const char* what) {
  for (size_t i = 0; i < values.size(); ++i) {
    QLLM_CHECK(std::isfinite(values[i]), "clip search: {} at row {}, column {} is {}", what,
               static_cast<int64_t>(i) / cols, static_cast<int64_t>(i) % cols, values[i]);
  }
}

// Output error of the group [first, first + n) of one row (columns col0..) at `params`: e^T H_gg e, or with
// `diagonal` sum_k H_kk e_k^2.
double group_output_error(const float* w, int64_t col0, int64_t n, const int4::GroupParams& params,
                          std::span<const float> h, int64_t cols, bool diagonal, std::vector<double>& e) {
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t q = int4::quantize_value(w[i], params);
    e[i] = static_cast<double>(w[i]) - int4::dequantize_value(q, params.scale, params.zero);
  }
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* h_row = &h[(col0 + i) * cols + col0];
    if (diagonal) {
      sum += h_row[i] * e[i] * e[i];
      continue;
    }
    double row = 0;
    for (int64_t j = 0; j < n; ++j) row += h_row[j] * e[j];
    sum += e[i] * row;
  }
  return sum;
}

}  // namespace

std::vector<int4::GroupParams> clip_search_ref(std::span<const float> w, int64_t rows, int64_t cols,
                                               std::span<const float> hessian, const Int4Scheme& scheme) {
  const GroupLayout layout = validate_int4_shape(rows, cols, scheme);
  QLLM_CHECK(!scheme.min_offset, "clip search [{}, {}]: the min-offset scheme is not a quantization target",
             rows, cols);
  QLLM_CHECK(
      static_cast<int64_t>(w.size()) == rows * cols && static_cast<int64_t>(hessian.size()) == cols * cols,
      "clip search: [{}, {}] weights need {} values and a {}x{} Hessian, got {} and {}", rows, cols,
      rows * cols, cols, cols, w.size(), hessian.size());
  check_finite(w, cols, "weight");
  check_finite(hessian, cols, "the Hessian");
  const bool bf16 = scheme.scale_dtype == DType::BF16;
  const bool diagonal = layout.groups_per_row == 0 || layout.group_elems == cols;
  std::vector<int4::GroupParams> params(static_cast<size_t>(layout.num_groups));
  // A GLOBAL group spans every row: its error is the sum over rows of each row's part.
  const int64_t units = layout.groups_per_row == 0 ? 1 : layout.num_groups;
#pragma omp parallel
  {
    std::vector<double> e(static_cast<size_t>(cols));
#pragma omp for schedule(dynamic, 16)
    for (int64_t g = 0; g < units; ++g) {
      const int64_t first = layout.first_flat(g), n = layout.size(g);
      const auto group = w.subspan(static_cast<size_t>(first), static_cast<size_t>(n));
      const int4::GroupStats stats = int4::group_stats(group);
      auto error_at = [&](int percent) {
        const int4::GroupParams p = int4::group_params(stats, percent, scheme.zero_point, bf16);
        if (layout.groups_per_row != 0) {
          return group_output_error(&w[first], first % cols, n, p, hessian, cols, diagonal, e);
        }
        double sum = 0;
        for (int64_t r = 0; r < rows; ++r)
          sum += group_output_error(&w[r * cols], 0, cols, p, hessian, cols, true, e);
        return sum;
      };
      // The scale search's candidates and order (int4_ref.cpp search_percent); ties keep the earlier one.
      int best_coarse = int4::coarse_percent(0);
      double best_error = std::numeric_limits<double>::infinity();
      for (int i = 0; i < int4::kCoarseCandidates; ++i) {
        const double err = error_at(int4::coarse_percent(i));
        if (err < best_error) best_error = err, best_coarse = int4::coarse_percent(i);
      }
      int best = best_coarse;
      for (int i = 0; i < int4::kFineCandidates; ++i) {
        const int percent = int4::fine_percent(best_coarse, i);
        const double err = error_at(percent);
        if (err < best_error) best_error = err, best = percent;
      }
      params[g] = int4::group_params(stats, best, scheme.zero_point, bf16);
    }
  }
  return params;
}

Int4Matrix quantize_int4_with_params(std::span<const float> w, int64_t rows, int64_t cols,
                                     const Int4Scheme& scheme, std::span<const int4::GroupParams> params) {
  const GroupLayout layout = validate_int4_shape(rows, cols, scheme);
  QLLM_CHECK(static_cast<int64_t>(w.size()) == rows * cols &&
                 static_cast<int64_t>(params.size()) == layout.num_groups,
             "INT4 [{}, {}]: {} weights and {} group parameters for {} groups", rows, cols, w.size(),
             params.size(), layout.num_groups);
  check_finite(w, cols, "weight");
  Int4Matrix out;
  out.rows = rows;
  out.cols = cols;
  out.scheme = scheme;
  out.packed.assign(static_cast<size_t>(rows * cols / 2), 0);
  gptq_store_params(out, layout, params);
  for (int64_t flat = 0; flat < rows * cols; ++flat) {
    const uint8_t nibble = int4::quantize_value(w[flat], params[layout.group_of_flat(flat)]);
    out.packed[flat / 2] |= static_cast<uint8_t>((flat & 1) ? nibble << 4 : nibble);
  }
  return out;
}

}  // namespace qllm
