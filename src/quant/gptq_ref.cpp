// CPU reference GPTQ: Hessian accumulation, preparation (dead columns, dampening, act order), the inverse
// Cholesky factor in double, and the blocked column loop. See gptq_ref.h and docs/GPTQ.md.
#include "quant/gptq_ref.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "qllm/error.h"
#include "quant/int4_groups.h"

namespace qllm {

namespace {

using int4::GroupParams;
using namespace fops;

constexpr int64_t kRowTile = 8;
// Work (about the multiply-adds) below which a loop runs on one thread: a parallel region ends in a barrier,
// which on shared cores costs more than small work (as model/cpu_ops.h kParallelWork).
constexpr int64_t kParallelWork =
    int64_t{1} << 22;  // rows quantized together: each row of U read once per tile, not per row

void check_finite(std::span<const float> values, int64_t cols, const char* what) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      fail("GPTQ: {} at row {}, column {} is {}: it needs finite values", what,
           static_cast<int64_t>(i) / cols, static_cast<int64_t>(i) % cols, values[i]);
    }
  }
}

// Lower Cholesky factor of the symmetric positive definite a[n, n] in place (upper triangle left as is).
// Left-looking by columns. The rows below a pivot are independent, but a parallel loop per column costs a
// barrier per column, which on shared cores costs more than the work below a few thousand columns.
void cholesky_lower(std::vector<double>& a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double* row_j = &a[j * n];
    double pivot = row_j[j];
#pragma omp simd reduction(- : pivot)
    for (int64_t k = 0; k < j; ++k) pivot -= row_j[k] * row_j[k];
    QLLM_CHECK(pivot > 0 && std::isfinite(pivot),
               "GPTQ: the dampened Hessian is not positive definite (pivot {} of {} is {}); raise the "
               "dampening or the calibration samples",
               j, n, pivot);
    const double diag = std::sqrt(pivot);
    row_j[j] = diag;
#pragma omp parallel for schedule(static) if (n >= 2048 && (n - j) * j > (1 << 20))
    for (int64_t i = j + 1; i < n; ++i) {
      double* row_i = &a[i * n];
      double s = row_i[j];
#pragma omp simd reduction(- : s)
      for (int64_t k = 0; k < j; ++k) s -= row_i[k] * row_j[k];
      row_i[j] = s / diag;
    }
  }
}

// Columns into quantization order: decreasing H_ii with act order (ties keep the original order).
std::vector<int64_t> column_order(std::span<const float> h, int64_t dim, bool act_order) {
  std::vector<int64_t> order(static_cast<size_t>(dim));
  std::iota(order.begin(), order.end(), 0);
  if (act_order) {
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return h[a * dim + a] > h[b * dim + b]; });
  }
  return order;
}

// The state of one tile of rows through the column loop.
struct RowTile {
  int64_t first_row = 0;
  int64_t count = 0;
  std::vector<float> work;  // [count, cols] current weights, in quantization order
  std::vector<float> err;   // [count, block] scaled errors of the current batch
};

struct LoopContext {
  const GptqPrepared& prepared;
  std::span<const float> u;  // [cols, cols] inverse factor
  const Int4Scheme& scheme;
  const GroupLayout& layout;
  int64_t cols;
  int64_t block_size;
  int64_t dynamic_group;  // group size when groups are chosen as reached, else 0
  std::vector<GroupParams>& params;
  Int4Matrix& out;
};

// Quantizes column i (quantization order) of every row of the tile and spreads its error over the rest of
// the batch [i + 1, i2). Each weight is updated as w - err * u in that order whatever the batch size, so
// blocking changes no bit.
void quantize_column(const LoopContext& c, RowTile& t, int64_t i, int64_t i1, int64_t i2) {
  const int64_t col = c.prepared.order[i];
  const float* u_row = &c.u[i * c.cols];
  const float d = u_row[i];
  for (int64_t r = 0; r < t.count; ++r) {
    const int64_t row = t.first_row + r;
    float* w = &t.work[r * c.cols];
    const int64_t g = c.layout.group_of(row, col);
    if (c.dynamic_group != 0 && col % c.dynamic_group == 0) {
      // Without act order the quantization order is the original one: the group is w[i, i + size).
      c.params[g] = int4::choose_group_params(std::span<const float>(w + i, c.layout.size(g)), c.scheme);
    }
    const GroupParams& p = c.params[g];
    const uint8_t nibble = int4::quantize_value(w[i], p);
    const int64_t flat = row * c.cols + col;
    c.out.packed[flat / 2] |= static_cast<uint8_t>((flat & 1) ? nibble << 4 : nibble);
    const float e = div_rn(sub_rn(w[i], int4::dequantize_value(nibble, p.scale, p.zero)), d);
    t.err[r * c.block_size + (i - i1)] = e;
    for (int64_t k = i + 1; k < i2; ++k) w[k] = sub_rn(w[k], mul_rn(e, u_row[k]));
  }
}

// The lazy update of the columns after the batch: W[:, i2:] -= Err @ U[i1:i2, i2:], term by term in row order.
void update_rest(const LoopContext& c, RowTile& t, int64_t i1, int64_t i2) {
  for (int64_t j = i1; j < i2; ++j) {
    const float* u_row = &c.u[j * c.cols];
    for (int64_t r = 0; r < t.count; ++r) {
      const float e = t.err[r * c.block_size + (j - i1)];
      float* w = &t.work[r * c.cols];
#pragma omp simd
      for (int64_t k = i2; k < c.cols; ++k) w[k] = sub_rn(w[k], mul_rn(e, u_row[k]));
    }
  }
}

void quantize_tile(const LoopContext& c, std::span<const float> w, RowTile& t) {
  for (int64_t r = 0; r < t.count; ++r) {
    for (int64_t i = 0; i < c.cols; ++i) {
      const int64_t col = c.prepared.order[i];
      t.work[r * c.cols + i] = c.prepared.dead[col] ? 0.0f : w[(t.first_row + r) * c.cols + col];
    }
  }
  for (int64_t i1 = 0; i1 < c.cols;) {
    const int64_t i2 = gptq_batch_end(i1, c.cols, c.block_size, c.dynamic_group);
    for (int64_t i = i1; i < i2; ++i) quantize_column(c, t, i, i1, i2);
    update_rest(c, t, i1, i2);
    i1 = i2;
  }
}

}  // namespace

// End of the lazy batch that starts at column i1. With groups chosen as they are reached, a group must not
// straddle the batch's end: its later columns would still lack this batch's updates when its scale is
// chosen. So the batch stops before such a group, and every group is read fully updated.
int64_t gptq_batch_end(int64_t i1, int64_t cols, int64_t block_size, int64_t dynamic_group) {
  int64_t i2 = std::min(i1 + block_size, cols);
  if (dynamic_group == 0) return i2;
  const int64_t last_start = ((i2 - 1) / dynamic_group) * dynamic_group;
  if (last_start > i1 && std::min(last_start + dynamic_group, cols) > i2) i2 = last_start;
  return i2;
}

HessianAccumulator::HessianAccumulator(int64_t dim) : dim_(dim) {
  QLLM_CHECK(dim > 0, "GPTQ: a Hessian needs a positive dimension, got {}", dim);
  sum_.assign(static_cast<size_t>(dim * dim), 0.0);
}

void HessianAccumulator::add(const float* x, int64_t rows) {
  QLLM_CHECK(rows >= 0, "GPTQ: {} input rows", rows);
  if (rows == 0) return;
  // Columns of x made contiguous, so that each entry is one dot product over the rows (in float, then added
  // to the double sum: a batch's rounding stays at float's, the total does not grow with the sample count).
  std::vector<float> xt(static_cast<size_t>(dim_ * rows));
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t i = 0; i < dim_; ++i) xt[i * rows + t] = x[t * dim_ + i];
  }
#pragma omp parallel for schedule(dynamic, 8) if (dim_ * dim_ * rows > kParallelWork)
  for (int64_t i = 0; i < dim_; ++i) {
    const float* xi = &xt[i * rows];
    for (int64_t j = 0; j <= i; ++j) {
      const float* xj = &xt[j * rows];
      float s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t t = 0; t < rows; ++t) s += xi[t] * xj[t];
      sum_[i * dim_ + j] += s;
    }
  }
  samples_ += rows;
}

std::vector<float> HessianAccumulator::hessian() const {
  QLLM_CHECK(samples_ > 0, "GPTQ: the Hessian of a {}-input layer has seen no calibration inputs", dim_);
  const double scale = 2.0 / static_cast<double>(samples_);
  std::vector<float> h(static_cast<size_t>(dim_ * dim_));
  for (int64_t i = 0; i < dim_; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      h[i * dim_ + j] = h[j * dim_ + i] = static_cast<float>(scale * sum_[i * dim_ + j]);
    }
  }
  return h;
}

GptqPrepared gptq_prepare(std::span<const float> h, int64_t dim, const GptqOptions& options) {
  QLLM_CHECK(dim > 0 && static_cast<int64_t>(h.size()) == dim * dim,
             "GPTQ: a Hessian of dimension {} needs {} values, got {}", dim, dim * dim, h.size());
  QLLM_CHECK(options.percdamp >= 0 && std::isfinite(options.percdamp),
             "GPTQ: the dampening must be a finite fraction >= 0, got {}", options.percdamp);
  QLLM_CHECK(options.block_size > 0, "GPTQ: the block size must be positive, got {}", options.block_size);
  check_finite(h, dim, "the Hessian");
  GptqPrepared p;
  p.dim = dim;
  p.order = column_order(h, dim, options.act_order);
  p.dead.assign(static_cast<size_t>(dim), 0);
  double diag_sum = 0;
  for (int64_t i = 0; i < dim; ++i) {
    p.dead[i] = h[i * dim + i] == 0.0f;
    diag_sum += p.dead[i] ? 1.0 : h[i * dim + i];
  }
  p.damp = options.percdamp * diag_sum / static_cast<double>(dim);
  p.hessian.resize(static_cast<size_t>(dim * dim));
  for (int64_t i = 0; i < dim; ++i) {
    const int64_t oi = p.order[i];
    for (int64_t j = 0; j < dim; ++j) p.hessian[i * dim + j] = h[oi * dim + p.order[j]];
    if (p.dead[oi]) p.hessian[i * dim + i] = 1.0;
    p.hessian[i * dim + i] += p.damp;
  }
  return p;
}

std::vector<float> gptq_inverse_factor_ref(const GptqPrepared& prepared) {
  const int64_t n = prepared.dim;
  // H = V V^T with V upper: the lower Cholesky factor of H with rows and columns reversed (J H J = L L^T).
  std::vector<double> a(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) a[i * n + j] = prepared.hessian[(n - 1 - i) * n + (n - 1 - j)];
  }
  cholesky_lower(a, n);
  std::vector<double> v(static_cast<size_t>(n * n), 0.0);  // V[i][j] = L[n-1-i][n-1-j], upper
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i; j < n; ++j) v[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)];
  }
  // U = V^-1 (upper), one column at a time by back substitution; columns are independent.
  std::vector<float> u(static_cast<size_t>(n * n), 0.0f);
#pragma omp parallel if (n * n * n > kParallelWork)
  {
    std::vector<double> col(static_cast<size_t>(n));
#pragma omp for schedule(dynamic, 16)
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = j; i >= 0; --i) {
        double s = i == j ? 1.0 : 0.0;
        const double* v_row = &v[i * n];
#pragma omp simd reduction(- : s)
        for (int64_t k = i + 1; k <= j; ++k) s -= v_row[k] * col[k];
        col[i] = s / v_row[i];
      }
      for (int64_t i = 0; i <= j; ++i) u[i * n + j] = static_cast<float>(col[i]);
    }
  }
  return u;
}

GroupLayout gptq_check_inputs(std::span<const float> w, int64_t rows, int64_t cols,
                              const GptqPrepared& prepared, size_t factor_size, const Int4Scheme& scheme,
                              int64_t block_size) {
  const GroupLayout layout = validate_int4_shape(rows, cols, scheme);
  QLLM_CHECK(!scheme.min_offset, "GPTQ [{}, {}]: the min-offset scheme is not a quantization target", rows,
             cols);
  QLLM_CHECK(static_cast<int64_t>(w.size()) == rows * cols, "GPTQ: weights hold {} values, [{}, {}] needs {}",
             w.size(), rows, cols, rows * cols);
  QLLM_CHECK(prepared.dim == cols && static_cast<int64_t>(factor_size) == cols * cols,
             "GPTQ: the Hessian is {}-dimensional ({} factor values) but the weight has {} columns",
             prepared.dim, factor_size, cols);
  QLLM_CHECK(block_size > 0, "GPTQ: the block size must be positive, got {}", block_size);
  check_finite(w, cols, "weight");
  return layout;
}

std::vector<float> gptq_start_weights(std::span<const float> w, int64_t rows, int64_t cols,
                                      const GptqPrepared& prepared) {
  std::vector<float> start(w.begin(), w.end());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < cols; ++k) {
      if (prepared.dead[k]) start[r * cols + k] = 0.0f;
    }
  }
  return start;
}

bool gptq_act_order(const GptqPrepared& prepared) {
  return !std::is_sorted(prepared.order.begin(), prepared.order.end());
}

std::vector<GroupParams> gptq_static_params(std::span<const float> w, const GroupLayout& layout,
                                            const Int4Scheme& scheme, bool act_order) {
  if (scheme.granularity == Granularity::Groupwise && !act_order) return {};
  std::vector<GroupParams> params(static_cast<size_t>(layout.num_groups));
#pragma omp parallel for schedule(dynamic, 16) if (layout.num_groups * layout.group_elems > kParallelWork)
  for (int64_t g = 0; g < layout.num_groups; ++g) {
    params[g] = int4::choose_group_params(
        w.subspan(static_cast<size_t>(layout.first_flat(g)), static_cast<size_t>(layout.size(g))), scheme);
  }
  return params;
}

std::vector<GroupParams> gptq_loop_params(std::span<const float> start, const GroupLayout& layout,
                                          const Int4Scheme& scheme, bool act_order,
                                          std::span<const GroupParams> groups) {
  if (groups.empty()) return gptq_static_params(start, layout, scheme, act_order);
  QLLM_CHECK(static_cast<int64_t>(groups.size()) == layout.num_groups,
             "GPTQ [{}, {}]: {} fixed group parameters for {} groups", layout.rows, layout.cols,
             groups.size(), layout.num_groups);
  return {groups.begin(), groups.end()};
}

void gptq_store_params(Int4Matrix& out, const GroupLayout& layout, std::span<const GroupParams> params) {
  out.scales.resize(static_cast<size_t>(layout.num_groups));
  if (out.scheme.zero_point) out.zeros.resize(static_cast<size_t>(layout.num_groups));
  for (int64_t g = 0; g < layout.num_groups; ++g) {
    QLLM_CHECK(std::isfinite(params[g].scale), "GPTQ: group {} (row {}): its scale overflows {}", g,
               layout.row_of(g), dtype_name(out.scheme.scale_dtype));
    out.scales[g] = params[g].scale_bits;
    if (out.scheme.zero_point) out.zeros[g] = params[g].zero;
  }
}

Int4Matrix gptq_quantize_ref(std::span<const float> w, int64_t rows, int64_t cols,
                             const GptqPrepared& prepared, std::span<const float> u, const Int4Scheme& scheme,
                             int64_t block_size, std::span<const GroupParams> groups) {
  const GroupLayout layout = gptq_check_inputs(w, rows, cols, prepared, u.size(), scheme, block_size);
  const std::vector<float> start = gptq_start_weights(w, rows, cols, prepared);
  Int4Matrix out;
  out.rows = rows;
  out.cols = cols;
  out.scheme = scheme;
  out.packed.assign(static_cast<size_t>(rows * cols / 2), 0);
  std::vector<GroupParams> params = gptq_loop_params(start, layout, scheme, gptq_act_order(prepared), groups);
  const int64_t dynamic_group = params.empty() ? layout.group_elems : 0;
  if (params.empty()) params.resize(static_cast<size_t>(layout.num_groups));

  const LoopContext c{prepared, u, scheme, layout, cols, block_size, dynamic_group, params, out};
  const int64_t tiles = (rows + kRowTile - 1) / kRowTile;
#pragma omp parallel if (rows * cols * cols > kParallelWork)
  {
    RowTile t;
    t.work.resize(static_cast<size_t>(kRowTile * cols));
    t.err.resize(static_cast<size_t>(kRowTile * block_size));
#pragma omp for schedule(dynamic, 1)
    for (int64_t tile = 0; tile < tiles; ++tile) {
      t.first_row = tile * kRowTile;
      t.count = std::min(kRowTile, rows - t.first_row);
      quantize_tile(c, start, t);
    }
  }
  gptq_store_params(out, layout, params);
  return out;
}

Int4Matrix gptq_ref(std::span<const float> w, int64_t rows, int64_t cols, std::span<const float> hessian,
                    const Int4Scheme& scheme, const GptqOptions& options) {
  const GptqPrepared prepared = gptq_prepare(hessian, cols, options);
  const std::vector<float> u = gptq_inverse_factor_ref(prepared);
  return gptq_quantize_ref(w, rows, cols, prepared, u, scheme, options.block_size);
}

void GptqSolverRef::factor(std::span<const float> hessian, int64_t dim, const GptqOptions& options) {
  prepared_ = gptq_prepare(hessian, dim, options);
  factor_ = gptq_inverse_factor_ref(prepared_);
  block_size_ = options.block_size;
}

Int4Matrix GptqSolverRef::quantize(std::span<const float> w, int64_t rows, int64_t cols,
                                   const Int4Scheme& scheme, std::span<const GroupParams> groups) {
  QLLM_CHECK(!factor_.empty(), "GPTQ: quantize() before factor()");
  return gptq_quantize_ref(w, rows, cols, prepared_, factor_, scheme, block_size_, groups);
}

OutputError hessian_output_error(std::span<const float> w, std::span<const float> w_hat, int64_t rows,
                                 int64_t cols, std::span<const float> h) {
  QLLM_CHECK(static_cast<int64_t>(w.size()) == rows * cols && w_hat.size() == w.size() &&
                 static_cast<int64_t>(h.size()) == cols * cols,
             "output error: [{}, {}] weights need {} values each and a {}x{} Hessian", rows, cols,
             rows * cols, cols, cols);
  // Float products in 8-wide vectors, each row's sums then added in double: a report's precision, fast.
  double err = 0, ref = 0;
#pragma omp parallel for reduction(+ : err, ref) schedule(dynamic, 4) if (rows * cols * cols > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = &w[r * cols];
    std::vector<float> d(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) d[j] = wr[j] - w_hat[r * cols + j];
    for (int64_t i = 0; i < cols; ++i) {
      const float* h_row = &h[i * cols];
      float hd = 0, hw = 0;  // (H d)_i and (H w)_i
#pragma omp simd reduction(+ : hd, hw)
      for (int64_t j = 0; j < cols; ++j) {
        hd += h_row[j] * d[j];
        hw += h_row[j] * wr[j];
      }
      err += static_cast<double>(d[i]) * hd;
      ref += static_cast<double>(wr[i]) * hw;
    }
  }
  return {std::max(err, 0.0), ref};
}

double gptq_output_error(std::span<const float> w, std::span<const float> w_hat, int64_t rows, int64_t cols,
                         std::span<const float> h) {
  const OutputError e = hessian_output_error(w, w_hat, rows, cols, h);
  return e.reference > 0 ? std::sqrt(e.error / e.reference) : 0.0;
}

}  // namespace qllm
