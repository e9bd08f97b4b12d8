#include "model/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace qllm::cpu {

// Built for AVX2 too where the compiler can dispatch at run time; the result is the same either way
// (same lane order, no FMA contraction).
#if defined(__x86_64__) && defined(__GNUC__)
#define QLLM_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define QLLM_VECTOR_CLONES
#endif

namespace {
constexpr int kLanes = 16;
constexpr int64_t kRowBlock = 8;  // weight rows converted together; each token's x stays hot across them
// Below this many multiply-adds a matmul runs on one thread: waking the team costs more than it saves.
constexpr int64_t kParallelWork = 1 << 18;
}  // namespace

QLLM_VECTOR_CLONES float dot(const float* a, const float* b, int64_t n) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lanes[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) lanes[i % kLanes] += a[i] * b[i];
  float sum = 0.0f;
  for (float v : lanes) sum += v;
  return sum;
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
      for (int64_t t = 0; t < tokens; ++t) {
        const float* xt = x + t * k;
        float* out_t = out + t * n + first;
        for (int64_t r = 0; r < count; ++r) out_t[r] = dot(xt, rows.data() + r * k, k);
      }
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
    // The angle is rounded to f32 as Hugging Face computes it (inv_freq @ positions in f32), so that
    // far positions rotate exactly as in the reference implementation.
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

void swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace qllm::cpu
