// The activation a skinny GEMM computes itself while it loads X, instead of reading an X that an elementwise
// kernel wrote just before: at decode the GEMM's launch then also does that kernel's work, one launch (and
// its drain and fill) less per fold. Two folds, each the same arithmetic as the kernel it replaces, so the
// results are those of the unfused pair (norm/rmsnorm.h, elementwise/swiglu.h):
//   ResidualRmsNorm: r = residual + delta (f32), X = T(w * (r * inv_rms)), inv_rms from r's whole row;
//                    r is written to residual_out (the CTAs read `residual` concurrently, so not in place);
//   Swiglu:          X[:, c] = T(silu(gate_up[:, c]) * gate_up[:, K + c]).
// Plain data, shared by the host (QuantLinear, the plan) and the kernel (x_prologue.cuh).
#pragma once

#include <cstdint>

namespace qllm {

enum class XPrologueKind : int32_t { None = 0, ResidualRmsNorm = 1, Swiglu = 2 };

struct XPrologue {
  XPrologueKind kind = XPrologueKind::None;
  // ResidualRmsNorm. Rows of K values (the GEMM's K is the hidden size).
  const float* residual = nullptr;  // f32 [M, K]
  const void* delta = nullptr;      // T [M, K] added first; null: X = rmsnorm(residual), nothing written
  float* residual_out = nullptr;    // f32 [M, K] = residual + delta (with delta); must not alias `residual`
  const float* norm_weight = nullptr;  // f32 [K]
  double eps = 1e-5;
  // Swiglu. The GEMM's K is the intermediate size I.
  const void* gate_up = nullptr;  // T [M, 2 K]: gate in columns [0, K), up in [K, 2 K)
};

}  // namespace qllm
