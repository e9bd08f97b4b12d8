// GPTQ (Frantar et al., 2022, arXiv 2210.17323): INT4 quantization of a linear layer that minimises the
// error of its output on calibration inputs, ||X W^T - X W'^T||, rather than the weight error. The CPU
// reference here is the spec of every GPTQ path (the CUDA one in kernels/gptq/ and the calibration driver);
// docs/GPTQ.md describes the algorithm as implemented.
//
// The result is an Int4Matrix in exactly the layout of the round-to-nearest quantizer (quantize_int4_ref):
// same groups (partial last groups included), the same scale/zero-point rules and scale dtype; only the
// nibbles (and the scales, computed from updated weights) differ. With an identity Hessian the two agree
// bit for bit (tested).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qllm/quant.h"
#include "quant/int4_math.h"

namespace qllm {

struct GptqOptions {
  double percdamp = 0.01;    // dampening: percdamp * mean(diag H) added to the diagonal
  int64_t block_size = 128;  // columns per lazy batch; changes speed only, never the result (tested)
  // Quantize columns in order of decreasing H_ii ("act order"). Group scales are then computed up front from
  // the original weights ("static groups"), so that groups stay runs of consecutive columns of the original
  // order and the kernels' layout is unchanged.
  bool act_order = false;
};

// Accumulates H = (2 / n) * sum over the n input rows x of x x^T (GPTQ's running mean), in double.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t dim);
  // x[rows, dim], row-major: `rows` more inputs of the layer.
  void add(const float* x, int64_t rows);
  int64_t dim() const { return dim_; }
  int64_t samples() const { return samples_; }
  std::vector<float> hessian() const;  // [dim, dim], symmetric, (2 / n) * sum x x^T

 private:
  int64_t dim_ = 0;
  int64_t samples_ = 0;
  std::vector<double> sum_;  // [dim, dim] lower triangle of sum x x^T
};

// The Hessian made ready for the solver: dead columns (H_ii == 0: inputs always zero) given H_ii = 1,
// dampened, and permuted into quantization order.
struct GptqPrepared {
  int64_t dim = 0;
  std::vector<int64_t>
      order;  // [dim] order[i]: the original column quantized i-th (identity without act order)
  std::vector<uint8_t> dead;    // [dim] by original column: 1 when H_ii was 0 (its weights are zeroed)
  std::vector<double> hessian;  // [dim, dim] H[order][:, order] + damp * I, row-major
  double damp = 0;              // the value added to the diagonal
};
GptqPrepared gptq_prepare(std::span<const float> hessian, int64_t dim, const GptqOptions& options);

// U, the upper Cholesky factor of the prepared Hessian's inverse (U^T U = H^-1), row-major [dim, dim], the
// lower triangle zero. Computed in double without forming H^-1: H = V V^T with V upper (a Cholesky from the
// bottom-right corner), then U = V^-1. qllm::Error when H is not positive definite.
std::vector<float> gptq_inverse_factor_ref(const GptqPrepared& prepared);

// The column loop: quantizes W[rows, cols] (cols == prepared.dim) in `prepared.order`, spreading each
// column's error over the columns not yet quantized with the rows of `inverse_factor` (U above). Group
// parameters (scheme's search included) come from the current weights as each group is reached; with act
// order (or GLOBAL / ROWWISE) from the original weights up front. `groups`, when given (one per group), are
// used as every group's parameters instead (static groups, e.g. clip_search_ref.h's). Rows run in parallel
// (OpenMP).
Int4Matrix gptq_quantize_ref(std::span<const float> w, int64_t rows, int64_t cols,
                             const GptqPrepared& prepared, std::span<const float> inverse_factor,
                             const Int4Scheme& scheme, int64_t block_size = 128,
                             std::span<const int4::GroupParams> groups = {});

// All three steps: GPTQ of W[rows, cols] under the Hessian H[cols, cols].
Int4Matrix gptq_ref(std::span<const float> w, int64_t rows, int64_t cols, std::span<const float> hessian,
                    const Int4Scheme& scheme, const GptqOptions& options = {});

// The Hessian-dependent part factored once and used for every weight that shares the layer input (q/k/v,
// gate/up): the CPU reference here, the CUDA solver in kernels/gptq/gptq_cuda.h.
class GptqSolver {
 public:
  virtual ~GptqSolver() = default;
  // Prepares H[dim, dim] and computes its inverse factor for the next quantize() calls.
  virtual void factor(std::span<const float> hessian, int64_t dim, const GptqOptions& options) = 0;
  // GPTQ of W[rows, cols] (cols == the factored dim) under the last factor(); `groups`: fixed group
  // parameters (gptq_quantize_ref), or empty.
  virtual Int4Matrix quantize(std::span<const float> w, int64_t rows, int64_t cols, const Int4Scheme& scheme,
                              std::span<const int4::GroupParams> groups) = 0;
  virtual std::string name() const = 0;  // "cpu", "cuda"
};

class GptqSolverRef final : public GptqSolver {
 public:
  void factor(std::span<const float> hessian, int64_t dim, const GptqOptions& options) override;
  Int4Matrix quantize(std::span<const float> w, int64_t rows, int64_t cols, const Int4Scheme& scheme,
                      std::span<const int4::GroupParams> groups) override;
  std::string name() const override { return "cpu"; }

 private:
  GptqPrepared prepared_;
  std::vector<float> factor_;
  int64_t block_size_ = 128;
};

// ---- pieces shared by the CPU and CUDA column loops (see gptq_ref.cpp) --------------------------------------

// Checks W against the prepared Hessian and the scheme; returns the group layout.
GroupLayout gptq_check_inputs(std::span<const float> w, int64_t rows, int64_t cols,
                              const GptqPrepared& prepared, size_t factor_size, const Int4Scheme& scheme,
                              int64_t block_size);
// W with the dead columns zeroed: the weights GPTQ starts from.
std::vector<float> gptq_start_weights(std::span<const float> w, int64_t rows, int64_t cols,
                                      const GptqPrepared& prepared);
bool gptq_act_order(const GptqPrepared& prepared);  // the order is not the identity
// The group parameters known before the column loop (GLOBAL, ROWWISE, and every group with act order), from
// the start weights; empty when groups are chosen as the loop reaches them (GROUPWISE without act order).
std::vector<int4::GroupParams> gptq_static_params(std::span<const float> start, const GroupLayout& layout,
                                                  const Int4Scheme& scheme, bool act_order);
// The column loop's starting group parameters: `groups` when given (checked: one per group), else
// gptq_static_params.
std::vector<int4::GroupParams> gptq_loop_params(std::span<const float> start, const GroupLayout& layout,
                                                const Int4Scheme& scheme, bool act_order,
                                                std::span<const int4::GroupParams> groups);
// End of the lazy batch that starts at column i1 (dynamic_group: the group size when groups are chosen as
// reached, else 0).
int64_t gptq_batch_end(int64_t i1, int64_t cols, int64_t block_size, int64_t dynamic_group);
// Stores the groups' scales (and zero points) into `out`; qllm::Error when a scale overflowed.
void gptq_store_params(Int4Matrix& out, const GroupLayout& layout, std::span<const int4::GroupParams> params);

// sum over rows of (w_r - v_r)^T H (w_r - v_r) and of w_r^T H w_r: the squared output error of replacing W by
// V on inputs whose Hessian is H, and the squared output (up to H's scale).
struct OutputError {
  double error = 0;
  double reference = 0;
};
OutputError hessian_output_error(std::span<const float> w, std::span<const float> v, int64_t rows,
                                 int64_t cols, std::span<const float> hessian);

// ||X (W - W')^T||_F / ||X W^T||_F on the inputs X whose Hessian is H (H = 2/n X^T X, so the ratio is
// sqrt(tr(D H D^T) / tr(W H W^T)) with D = W - W'): a layer's relative output error on calibration data.
double gptq_output_error(std::span<const float> w, std::span<const float> w_hat, int64_t rows, int64_t cols,
                         std::span<const float> hessian);

}  // namespace qllm
