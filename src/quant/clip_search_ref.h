// Output-aware clipping for INT4 (AWQ's clip search, Lin et al. 2023, arXiv 2306.00978, judged through the
// inputs' Hessian as awq_ref.h judges its scales): per group, the clip percent whose rounding changes the
// layer's output on the calibration inputs least, instead of the one of least weight error (--scale-search
// mse/mae) or no clipping. The candidates are the scale search's (int4_math.h: a coarse pass, then a fine one
// around its winner). A group's output error is e^T H_gg e, with e the group's rounding error and H_gg the
// Hessian block of its columns; GLOBAL and ROWWISE groups span whole rows, where that block would cost
// cols^2 per candidate and row, so they are weighed by H's diagonal.
//
// The result is group parameters in the layout of quantize_int4_ref (scale dtype, zero points, partial last
// groups): quantize_int4_with_params rounds with them, and GPTQ takes them as its static groups.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "qllm/quant.h"
#include "quant/int4_math.h"

namespace qllm {

// W[rows, cols] row-major; H [cols, cols] the Hessian of the layer's inputs (any positive multiple of
// X^T X). scheme.search is ignored: this is the search.
std::vector<int4::GroupParams> clip_search_ref(std::span<const float> w, int64_t rows, int64_t cols,
                                               std::span<const float> hessian, const Int4Scheme& scheme);

// Round to nearest with the given group parameters (one per group of scheme's layout).
Int4Matrix quantize_int4_with_params(std::span<const float> w, int64_t rows, int64_t cols,
                                     const Int4Scheme& scheme, std::span<const int4::GroupParams> params);

}  // namespace qllm
