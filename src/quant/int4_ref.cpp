// CPU reference INT4 quantizer: plain loops over groups, the spec the CUDA kernels are tested against.
#include <cmath>
#include <limits>

#include "qllm/error.h"
#include "qllm/quant.h"
#include "quant/int4_groups.h"

namespace qllm {

namespace {

using int4::group_stats;
using int4::GroupParams;
using int4::GroupStats;
using int4::search_percent;

// Rejects NaN and Inf with the position of the first one.
void check_finite(std::span<const float> w, int64_t cols) {
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i])) {
      fail("weight at row {}, column {} is {}: INT4 quantization needs finite weights",
           static_cast<int64_t>(i) / cols, static_cast<int64_t>(i) % cols, w[i]);
    }
  }
}

// Sum of the fixed-point errors of quantizing `group` with `params`. Unsigned integer addition is exact,
// so the OpenMP split (used for the one big GLOBAL group) cannot change the result.
uint64_t group_error(std::span<const float> group, const GroupParams& params, float normalizer,
                     bool squared) {
  uint64_t total = 0;
  const int64_t n = static_cast<int64_t>(group.size());
#pragma omp parallel for simd reduction(+ : total) schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) total += int4::error_fixed_point(group[i], params, normalizer, squared);
  return total;
}

}  // namespace

GroupStats int4::group_stats(std::span<const float> group) {
  GroupStats stats{group[0], group[0]};
  for (float w : group) {
    stats.min = std::fmin(stats.min, w);
    stats.max = std::fmax(stats.max, w);
  }
  return stats;
}

// Picks the clipping percent with the least error: coarse pass, then fine pass around its winner.
// Ties keep the earlier candidate, which the CUDA kernels reproduce by evaluating in the same order.
int int4::search_percent(std::span<const float> group, GroupStats stats, const Int4Scheme& scheme) {
  if (scheme.search == ScaleSearch::None) return 100;
  const bool bf16 = scheme.scale_dtype == DType::BF16;
  const bool squared = scheme.search == ScaleSearch::Mse;
  const float normalizer = int4::error_normalizer(stats);
  auto error_at = [&](int percent) {
    return group_error(group, int4::group_params(stats, percent, scheme.zero_point, bf16), normalizer,
                       squared);
  };
  int best_coarse = int4::coarse_percent(0);
  uint64_t best_error = std::numeric_limits<uint64_t>::max();
  for (int i = 0; i < int4::kCoarseCandidates; ++i) {
    const uint64_t e = error_at(int4::coarse_percent(i));
    if (e < best_error) best_error = e, best_coarse = int4::coarse_percent(i);
  }
  int best = int4::fine_percent(best_coarse, 0);
  best_error = std::numeric_limits<uint64_t>::max();
  for (int i = 0; i < int4::kFineCandidates; ++i) {
    const uint64_t e = error_at(int4::fine_percent(best_coarse, i));
    if (e < best_error) best_error = e, best = int4::fine_percent(best_coarse, i);
  }
  return best;
}

Int4Matrix quantize_int4_ref(std::span<const float> w, int64_t rows, int64_t cols, const Int4Scheme& scheme) {
  const GroupLayout layout = validate_int4_shape(rows, cols, scheme);
  QLLM_CHECK(
      !scheme.min_offset,
      "INT4 [{}, {}]: qllm does not quantize to the min-offset scheme (GGUF Q4_1 weights are converted "
      "from files by int4_from_ggml)",
      rows, cols);
  QLLM_CHECK(static_cast<int64_t>(w.size()) == rows * cols, "weights hold {} values, shape [{}, {}] needs {}",
             w.size(), rows, cols, rows * cols);
  check_finite(w, cols);
  const bool bf16 = scheme.scale_dtype == DType::BF16;

  Int4Matrix out;
  out.rows = rows;
  out.cols = cols;
  out.scheme = scheme;
  out.packed.assign(static_cast<size_t>(rows * cols / 2), 0);
  out.scales.resize(static_cast<size_t>(layout.num_groups));
  if (scheme.zero_point) out.zeros.resize(static_cast<size_t>(layout.num_groups));

  // Groups are independent and start on byte boundaries (even sizes, even K), so they run in parallel.
  // Errors are raised outside the parallel loops: an exception must not leave an OpenMP region.
  auto group_span = [&](int64_t g) {
    return w.subspan(static_cast<size_t>(layout.first_flat(g)), static_cast<size_t>(layout.size(g)));
  };
  std::vector<GroupStats> stats(static_cast<size_t>(layout.num_groups));
#pragma omp parallel for schedule(static) if (layout.num_groups > 1)
  for (int64_t g = 0; g < layout.num_groups; ++g) stats[g] = group_stats(group_span(g));
  for (int64_t g = 0; g < layout.num_groups; ++g) {
    const GroupParams plain = int4::group_params(stats[g], 100, scheme.zero_point, bf16);
    QLLM_CHECK(std::isfinite(plain.scale), "group {} (row {}, range [{}, {}]): its scale overflows {}", g,
               layout.row_of(g), stats[g].min, stats[g].max, dtype_name(scheme.scale_dtype));
  }

#pragma omp parallel for schedule(dynamic, 64) if (layout.num_groups > 1)
  for (int64_t g = 0; g < layout.num_groups; ++g) {
    const int64_t begin = layout.first_flat(g);
    const auto group = group_span(g);
    const int percent = search_percent(group, stats[g], scheme);
    const GroupParams params = int4::group_params(stats[g], percent, scheme.zero_point, bf16);
    out.scales[g] = params.scale_bits;
    if (scheme.zero_point) out.zeros[g] = params.zero;
    for (int64_t i = 0; i < static_cast<int64_t>(group.size()); ++i) {
      const int64_t flat = begin + i;
      const uint8_t nibble = int4::quantize_value(group[i], params);
      out.packed[flat / 2] |= static_cast<uint8_t>((flat & 1) ? nibble << 4 : nibble);
    }
  }
  return out;
}

Int4Matrix quantize_int4_ref(std::span<const Half> w, int64_t rows, int64_t cols, const Int4Scheme& scheme) {
  std::vector<float> values(w.size());
  for (size_t i = 0; i < w.size(); ++i) values[i] = to_float(w[i]);
  return quantize_int4_ref(values, rows, cols, scheme);
}

Int4Matrix quantize_int4_ref(std::span<const BFloat16> w, int64_t rows, int64_t cols,
                             const Int4Scheme& scheme) {
  std::vector<float> values(w.size());
  for (size_t i = 0; i < w.size(); ++i) values[i] = to_float(w[i]);
  return quantize_int4_ref(values, rows, cols, scheme);
}

std::vector<float> dequantize_int4_ref(const Int4Matrix& m) {
  const GroupLayout layout = m.layout();
  QLLM_CHECK(!m.scheme.min_offset || m.mins.size() == m.scales.size(),
             "INT4 [{}, {}]: a min-offset matrix needs one minimum per group ({} for {} groups)", m.rows,
             m.cols, m.mins.size(), m.scales.size());
  std::vector<float> out(static_cast<size_t>(m.rows * m.cols));
  for (int64_t flat = 0; flat < m.rows * m.cols; ++flat) {
    const int64_t g = layout.group_of_flat(flat);
    out[flat] = m.scheme.min_offset ? int4::dequantize_value_min(m.nibble(flat), m.scale(g), m.min(g))
                                    : int4::dequantize_value(m.nibble(flat), m.scale(g), m.zero(g));
  }
  return out;
}

std::vector<Half> dequantize_int4_to_half_ref(const Int4Matrix& m) {
  const std::vector<float> values = dequantize_int4_ref(m);
  std::vector<Half> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = to_half(values[i]);
  return out;
}

std::vector<BFloat16> dequantize_int4_to_bf16_ref(const Int4Matrix& m) {
  const std::vector<float> values = dequantize_int4_ref(m);
  std::vector<BFloat16> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = to_bf16(values[i]);
  return out;
}

}  // namespace qllm
