#include "model/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "qllm/error.h"

// The 8-lane vector type only travels between inline functions of this file: no ABI to keep stable.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace qllm::cpu {

// The hot loops are built for AVX2 too where the compiler can dispatch at run time; every target gives
// the same bits (same summation order, no FMA contraction).
#if defined(__x86_64__) && defined(__GNUC__)
#define QLLM_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define QLLM_VECTOR_CLONES
#endif

namespace {

constexpr int64_t kRowBlock = 8;  // weight rows converted to f32 together, then used for every token

using f32x8 = float __attribute__((vector_size(32)));  // 8 lanes: one AVX register, two SSE ones

// Every helper that takes or returns an f32x8 is always inlined into the target_clones functions below.
// An out-of-line helper is compiled once, for the default target, which passes 32-byte vectors in memory,
// while the AVX2 clone would call it passing them in ymm registers: at -O0 (no inlining) that silently
// produced garbage. always_inline makes such a call impossible (the compiler errors if it cannot inline).
#define QLLM_VECTOR_HELPER __attribute__((always_inline)) inline

QLLM_VECTOR_HELPER f32x8 load8(const float* p) {
  f32x8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The lanes, then the scalar tail, summed in one fixed order: every tile shape below gives the same bits
// for the same (token, row), so a token's logits do not depend on what else is in the batch.
QLLM_VECTOR_HELPER float finish(f32x8 acc, const float* a, const float* b, int64_t from, int64_t n) {
  float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (int64_t i = from; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// out[t * out_stride + r] = dot(x[t], w[r]) for a tile of T tokens x R weight rows (both [.., k]): each
// weight vector is loaded once for T tokens and each activation vector once for R rows.
template <int T, int R>
QLLM_VECTOR_HELPER void dot_tile(const float* x, const float* w, int64_t k, float* out, int64_t out_stride) {
  f32x8 acc[T][R] = {};
  const int64_t k8 = k - k % 8;
  for (int64_t i = 0; i < k8; i += 8) {
    f32x8 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load8(w + r * k + i);
    for (int t = 0; t < T; ++t) {
      const f32x8 xv = load8(x + t * k + i);
      for (int r = 0; r < R; ++r) acc[t][r] += xv * wv[r];
    }
  }
  for (int t = 0; t < T; ++t) {
    for (int r = 0; r < R; ++r) out[t * out_stride + r] = finish(acc[t][r], x + t * k, w + r * k, k8, k);
  }
}

template <int T>
QLLM_VECTOR_HELPER void dot_rows(const float* x, const float* w, int64_t rows, int64_t k, float* out,
                                 int64_t out_stride) {
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) dot_tile<T, 2>(x, w + r * k, k, out + r, out_stride);
  if (r < rows) dot_tile<T, 1>(x, w + r * k, k, out + r, out_stride);
}

// out[t, first .. first + count) for every token, from `count` converted weight rows [count, k].
QLLM_VECTOR_CLONES void matmul_block(float* out, const float* x, int64_t tokens, const float* rows,
                                     int64_t count, int64_t k, int64_t n) {
  int64_t t = 0;
  for (; t + 4 <= tokens; t += 4) dot_rows<4>(x + t * k, rows, count, k, out + t * n, n);
  switch (tokens - t) {
    case 3:
      dot_rows<3>(x + t * k, rows, count, k, out + t * n, n);
      break;
    case 2:
      dot_rows<2>(x + t * k, rows, count, k, out + t * n, n);
      break;
    case 1:
      dot_rows<1>(x + t * k, rows, count, k, out + t * n, n);
      break;
    default:
      break;
  }
}

}  // namespace

QLLM_VECTOR_CLONES float dot(const float* a, const float* b, int64_t n) {
  float out;
  dot_tile<1, 1>(a, b, n, &out, 1);
  return out;
}

void matmul(float* out, const float* x, int64_t tokens, const WeightMatrix& w) {
  const int64_t n = w.rows;
  const int64_t k = w.cols;
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
#pragma omp parallel if (tokens * n * k >= kParallelWork)
  {
    std::vector<float> rows(static_cast<size_t>(kRowBlock * k));  // [kRowBlock, k] converted weights
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t first = b * kRowBlock;
      const int64_t count = std::min(kRowBlock, n - first);
      for (int64_t r = 0; r < count; ++r) w.row_to_f32(first + r, rows.data() + r * k);
      matmul_block(out + first, x, tokens, rows.data(), count, k, n);
    }
  }
}

void rmsnorm(float* out, const float* x, const float* weight, int64_t n, double eps) {
  double sum_sq = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * inv_rms);
}

void rope(float* x, int64_t heads, int64_t head_dim, int64_t position, std::span<const float> inv_freq) {
  const int64_t half = head_dim / 2;
  for (int64_t j = 0; j < half; ++j) {
    // The angle is rounded to f32 as Hugging Face computes it (inv_freq @ positions in f32). inv_freq itself
    // is computed in double and rounded once (HF: in f32), so it may differ by an ulp, which shifts angles at
    // the far end of a 131k context by up to ~1e-2 rad; the logit checks against HF (1k context) cannot tell.
    const float angle = static_cast<float>(position) * inv_freq[j];
    const float c = static_cast<float>(std::cos(static_cast<double>(angle)));
    const float s = static_cast<float>(std::sin(static_cast<double>(angle)));
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + h * head_dim;
      const float first = v[j];
      const float second = v[j + half];
      v[j] = first * c - second * s;
      v[j + half] = second * c + first * s;
    }
  }
}

void softmax(float* x, int64_t n) {
  const float max = *std::max_element(x, x + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

double negative_log_likelihood(const float* logits, int64_t n, int32_t target) {
  const float max = *std::max_element(logits, logits + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  QLLM_CHECK(std::isfinite(sum) && std::isfinite(max),
             "the logits are not finite (the model produced NaN/Inf)");
  return std::log(sum) + max - static_cast<double>(logits[target]);
}

void swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace qllm::cpu
