// Activation-aware scaling (AWQ, Lin et al. 2023, arXiv 2306.00978) as qllm uses it before INT4 quantization:
// per input channel k, a scale s_k = mean|x_k|^a (normalised so that max(s) * min(s) = 1) multiplies column k
// of every weight reading that input, and 1/s_k is folded into what produces the input (an RMSNorm's weight,
// or the rows of up_proj for down_proj). The product is unchanged in exact arithmetic; quantization of W s
// then spends its levels where the inputs are large. The exponent a is searched on a grid, choosing the one
// whose quantized weights change the layer's outputs on the calibration inputs least. docs/GPTQ.md.
//
// The output error is measured through the inputs' Hessian, sum_r (w_r - w'_r)^T H (w_r - w'_r) with
// H = X^T X / n, rather than by running the inputs through each candidate: its cost does not grow with the
// calibration tokens, and GPTQ needs the same H.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "qllm/quant.h"
#include "quant/gptq_ref.h"

namespace qllm {

// One weight that reads the searched input: W[rows, dim] row-major.
struct AwqWeight {
  std::span<const float> values;
  int64_t rows = 0;
};

struct AwqSearch {
  std::vector<float> scales;  // [dim] s (all 1 when a = 0 won)
  double alpha = 0;           // the exponent chosen
  double error = 0;           // its output error, relative: sum d^T H d / sum w^T H w over the weights
  double error_unscaled = 0;  // the same at a = 0 (plain round to nearest)
};

// sum_r (w_r - w'_r)^T H (w_r - w'_r) and sum_r w_r^T H w_r (hessian_output_error's contract): how a search
// candidate is judged; the engine passes one that runs on the GPU.
using OutputErrorFn = std::function<OutputError(std::span<const float> w, std::span<const float> w_hat,
                                                int64_t rows, int64_t cols, std::span<const float> hessian)>;

// Searches a in {0, 1/grid, ..., (grid-1)/grid} for the input whose per-channel mean |x| is `mean_abs` and
// whose Hessian is `hessian` [dim, dim]; each weight is quantized by round to nearest in `scheme` after the
// scaling. a = 0 is plain RTN, so the result never measures worse than RTN on these inputs.
AwqSearch awq_search_ref(std::span<const float> mean_abs, std::span<const float> hessian, int64_t dim,
                         std::span<const AwqWeight> weights, const Int4Scheme& scheme, int grid = 20,
                         const OutputErrorFn& output_error = hessian_output_error);

// The scales of exponent a: s_k = max(mean_abs_k, 1e-4)^a / sqrt(max * min).
std::vector<float> awq_scales(std::span<const float> mean_abs, double alpha);

}  // namespace qllm
