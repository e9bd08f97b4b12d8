// INT4 matrices as whole stored objects: comparing schemes, validating a matrix read from a file, one row's
// reconstruction and fusing projections by rows (include/qllm/quant.h).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/checked_math.h"
#include "qllm/error.h"
#include "qllm/quant.h"
#include "quant/int4_math.h"

namespace qllm {

bool same_stored_format(const Int4Scheme& a, const Int4Scheme& b) {
  return a.granularity == b.granularity &&
         (a.granularity != Granularity::Groupwise || a.group_size == b.group_size) &&
         a.zero_point == b.zero_point && a.min_offset == b.min_offset && a.scale_dtype == b.scale_dtype;
}

void validate_int4_matrix(const Int4Matrix& m, std::string_view what) {
  GroupLayout layout;
  try {
    layout = m.layout();
  } catch (const Error& e) {
    fail("{}: {}", what, e.what());
  }
  const auto groups = static_cast<size_t>(layout.num_groups);
  const auto packed = static_cast<size_t>(checked_mul(m.rows, m.cols, what) / 2);
  QLLM_CHECK(m.packed.size() == packed, "{}: {} packed bytes for [{}, {}], expected {}", what,
             m.packed.size(), m.rows, m.cols, packed);
  QLLM_CHECK(m.scales.size() == groups, "{}: {} scales, expected {} (one per group)", what, m.scales.size(),
             groups);
  QLLM_CHECK(m.zeros.size() == (m.scheme.zero_point ? groups : 0), "{}: {} zero points, expected {}", what,
             m.zeros.size(), m.scheme.zero_point ? groups : 0);
  QLLM_CHECK(m.mins.size() == (m.scheme.min_offset ? groups : 0), "{}: {} minimums, expected {}", what,
             m.mins.size(), m.scheme.min_offset ? groups : 0);
  for (size_t g = 0; g < m.zeros.size(); ++g) {
    QLLM_CHECK(m.zeros[g] <= 15, "{}: zero point {} of group {} is outside 0..15", what, m.zeros[g], g);
  }
  for (size_t g = 0; g < groups; ++g) {
    // A scale of Inf or NaN reconstructs its group to garbage (0 * Inf is NaN): corrupt, not a weight.
    QLLM_CHECK(std::isfinite(m.scale(static_cast<int64_t>(g))), "{}: scale of group {} is {}", what, g,
               m.scale(static_cast<int64_t>(g)));
  }
}

void dequantize_int4_row(const Int4Matrix& m, int64_t row, float* out) {
  const GroupLayout layout = m.layout();
  const int64_t first = row * m.cols;
  for (int64_t c = 0; c < m.cols; ++c) {
    const int64_t g = layout.group_of(row, c);
    out[c] = m.scheme.min_offset ? int4::dequantize_value_min(m.nibble(first + c), m.scale(g), m.min(g))
                                 : int4::dequantize_value(m.nibble(first + c), m.scale(g), m.zero(g));
  }
}

namespace {

// A GLOBAL matrix as ROWWISE rows that all carry its one scale (and zero point or minimum).
Int4Matrix as_rowwise(const Int4Matrix& m) {
  Int4Matrix out = m;
  out.scheme.granularity = Granularity::Rowwise;
  out.scales.assign(static_cast<size_t>(m.rows), m.scales.at(0));
  if (!m.zeros.empty()) out.zeros.assign(static_cast<size_t>(m.rows), m.zeros[0]);
  if (!m.mins.empty()) out.mins.assign(static_cast<size_t>(m.rows), m.mins[0]);
  return out;
}

template <typename T>
void append(std::vector<T>& to, const std::vector<T>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

}  // namespace

Int4Matrix concat_int4_rows(std::span<const Int4Matrix* const> parts) {
  QLLM_CHECK(!parts.empty(), "fusing INT4 matrices: no parts");
  if (parts.size() == 1) return *parts[0];
  const Int4Matrix& first = *parts[0];
  const bool global = first.scheme.granularity == Granularity::Global;
  Int4Matrix out;
  out.cols = first.cols;
  out.scheme = first.scheme;
  if (global) out.scheme.granularity = Granularity::Rowwise;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Int4Matrix& p = *parts[i];
    QLLM_CHECK(same_stored_format(p.scheme, first.scheme),
               "fusing INT4 matrices: part {} is stored as {}, part 0 as {} (a fused projection needs one "
               "format)",
               i, p.scheme.describe(), first.scheme.describe());
    QLLM_CHECK(p.cols == first.cols, "fusing INT4 matrices: part {} has {} columns, part 0 {}", i, p.cols,
               first.cols);
    const Int4Matrix rows = global ? as_rowwise(p) : p;
    out.rows += p.rows;
    append(out.packed, rows.packed);  // K is even: every row starts on a byte boundary
    append(out.scales, rows.scales);
    append(out.zeros, rows.zeros);
    append(out.mins, rows.mins);
  }
  return out;
}

}  // namespace qllm
