#include "model/sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "kernels/sampling/counter_rng.h"
#include "qllm/error.h"

namespace qllm {

namespace {

constexpr float kRemoved = -std::numeric_limits<float>::infinity();

// Probabilities of the logits (softmax in double); removed tokens get 0.
std::vector<double> probabilities(std::span<const float> logits) {
  const float max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    p[i] = logits[i] == kRemoved ? 0.0 : std::exp(static_cast<double>(logits[i]) - max);
    sum += p[i];
  }
  for (double& v : p) v /= sum;
  return p;
}

}  // namespace

void SamplingParams::validate() const {
  QLLM_CHECK(std::isfinite(temperature) && temperature >= 0.0f, "temperature must be >= 0, got {}",
             temperature);
  QLLM_CHECK(top_k >= 0, "top-k must be >= 0 (0 = off), got {}", top_k);
  QLLM_CHECK(top_p > 0.0f && top_p <= 1.0f, "top-p must be in (0, 1], got {}", top_p);
  QLLM_CHECK(min_p >= 0.0f && min_p <= 1.0f, "min-p must be in [0, 1], got {}", min_p);
  QLLM_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0.0f,
             "repetition penalty must be > 0 (1 = off), got {}", repetition_penalty);
}

std::string SamplingParams::describe() const {
  std::string out = greedy() ? "greedy" : fmt::format("temperature {}", temperature);
  if (!greedy()) {
    if (top_k > 0) out += fmt::format(", top-k {}", top_k);
    if (top_p < 1.0f) out += fmt::format(", top-p {}", top_p);
    if (min_p > 0.0f) out += fmt::format(", min-p {}", min_p);
    out += fmt::format(", seed {}", seed);
  }
  if (repetition_penalty != 1.0f) out += fmt::format(", repetition penalty {}", repetition_penalty);
  return out;
}

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, float penalty) {
  if (penalty == 1.0f) return;
  std::unordered_set<int32_t> seen(history.begin(), history.end());
  for (int32_t id : seen) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
    float& l = logits[id];
    l = l > 0.0f ? l / penalty : l * penalty;
  }
}

void apply_top_k(std::span<float> logits, int64_t k) {
  if (k <= 0 || static_cast<size_t>(k) >= logits.size()) return;
  std::vector<float> sorted(logits.begin(), logits.end());
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<>());
  const float kth = sorted[k - 1];
  for (float& l : logits) {
    if (l < kth) l = kRemoved;
  }
}

void apply_top_p(std::span<float> logits, float top_p) {
  if (top_p >= 1.0f) return;
  const std::vector<double> p = probabilities(logits);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  // Keep the likeliest tokens until their mass reaches top_p (always at least one).
  double mass = 0.0;
  size_t keep = 0;
  while (keep < order.size() && (keep == 0 || mass < top_p)) mass += p[order[keep++]];
  for (size_t i = keep; i < order.size(); ++i) logits[order[i]] = kRemoved;
}

void apply_min_p(std::span<float> logits, float min_p) {
  if (min_p <= 0.0f) return;
  const std::vector<double> p = probabilities(logits);
  const double threshold = min_p * *std::max_element(p.begin(), p.end());
  for (size_t i = 0; i < logits.size(); ++i) {
    if (p[i] < threshold) logits[i] = kRemoved;
  }
}

int32_t argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(SamplingParams params) : params_(params) {
  params_.validate();
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  return sample_token(params_, step_++, logits, history);
}

int32_t sample_token(const SamplingParams& params, uint64_t step, std::span<float> logits,
                     std::span<const int32_t> history) {
  QLLM_CHECK(!logits.empty(), "sample: empty logits");
  for (size_t i = 0; i < logits.size(); ++i) {
    QLLM_CHECK(std::isfinite(logits[i]), "sample: the logit of token {} is {} (the model produced NaN/Inf)",
               i, logits[i]);
  }
  apply_repetition_penalty(logits, history, params.repetition_penalty);
  const int32_t best = argmax(logits);
  if (params.greedy()) return best;
  for (float& l : logits) l /= params.temperature;
  // A temperature so small that the top logit overflows: its limit, greedy decoding (softmax would be NaN).
  if (!std::isfinite(logits[static_cast<size_t>(best)])) return best;
  apply_top_k(logits, params.top_k);
  apply_top_p(logits, params.top_p);
  apply_min_p(logits, params.min_p);
  const std::vector<double> p = probabilities(logits);
  // Inverse-CDF draw; the last kept token absorbs rounding at the top end.
  const double u = counter_uniform(params.seed, step);
  double cumulative = 0.0;
  int32_t last_kept = argmax(logits);
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) continue;
    last_kept = static_cast<int32_t>(i);
    cumulative += p[i];
    if (u < cumulative) return last_kept;
  }
  return last_kept;
}

}  // namespace qllm
