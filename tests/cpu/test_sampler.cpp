// Sampler: greedy is the argmax, the filters keep exactly the tokens HF's warpers keep, the repetition
// penalty follows HF's arithmetic, draws follow the distribution, and a seed fixes the tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "model/sampler.h"
#include "kernels/sampling/counter_rng.h"
#include "qllm/error.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

std::vector<float> random_logits(size_t n, Rng& rng, double scale = 3.0) {
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(scale * rng.normal());
  return v;
}

std::vector<double> softmax_of(const std::vector<float>& logits) {
  const float max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::isinf(logits[i]) ? 0.0 : std::exp(logits[i] - max);
  for (double& v : p) v /= sum;
  return p;
}

size_t kept_count(const std::vector<float>& logits) {
  return static_cast<size_t>(
      std::count_if(logits.begin(), logits.end(), [](float l) { return !std::isinf(l); }));
}

TEST(Sampler, GreedyIsArgmax) {
  Rng rng(testing::fresh_seed());
  Sampler sampler(SamplingParams{});
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> logits = random_logits(1000, rng);
    const int32_t expected =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(sampler.sample(logits, {}), expected);
  }
  std::vector<float> ties = {1.0f, 5.0f, 2.0f, 5.0f};
  EXPECT_EQ(sampler.sample(ties, {}), 1);  // first of equal maxima, as torch.argmax
}

TEST(Sampler, RepetitionPenaltyFollowsHf) {
  std::vector<float> logits = {2.0f, -2.0f, 3.0f, -1.0f, 0.5f};
  const std::vector<int32_t> history = {0, 1, 1, 1, 4};  // repeats count once
  apply_repetition_penalty(logits, history, 2.0f);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -4.0f, 3.0f, -1.0f, 0.25f}));

  // Greedy applies it too: the repeated favourite loses to the runner-up.
  Sampler greedy(SamplingParams{.repetition_penalty = 1.5f});
  std::vector<float> l2 = {3.0f, 2.5f};
  const std::vector<int32_t> seen = {0};
  EXPECT_EQ(greedy.sample(l2, seen), 1);
}

TEST(Sampler, TopKKeepsTheKLargest) {
  Rng rng(testing::fresh_seed());
  for (int64_t k : {1, 5, 50}) {
    std::vector<float> logits = random_logits(500, rng);
    std::vector<float> sorted = logits;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    apply_top_k(logits, k);
    EXPECT_EQ(kept_count(logits), static_cast<size_t>(k));
    for (float l : logits) {
      if (!std::isinf(l)) {
        EXPECT_GE(l, sorted[k - 1]);
      }
    }
  }
  std::vector<float> ties = {1, 3, 3, 2};
  apply_top_k(ties, 1);
  EXPECT_EQ(kept_count(ties), 2u);  // ties with the k-th are kept, as HF
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  Rng rng(testing::fresh_seed());
  for (float top_p : {0.1f, 0.5f, 0.9f, 0.99f}) {
    std::vector<float> logits = random_logits(300, rng);
    const std::vector<double> p = softmax_of(logits);
    apply_top_p(logits, top_p);
    double kept_mass = 0, smallest_kept = 1, largest_removed = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      if (std::isinf(logits[i])) {
        largest_removed = std::max(largest_removed, p[i]);
      } else {
        kept_mass += p[i];
        smallest_kept = std::min(smallest_kept, p[i]);
      }
    }
    EXPECT_GE(kept_mass, top_p - 1e-9);
    EXPECT_LT(kept_mass - smallest_kept, top_p);  // minimal: without its least likely token it falls short
    EXPECT_GE(smallest_kept, largest_removed);    // the likeliest tokens
  }
  std::vector<float> one = {0.0f, 10.0f, 0.0f};
  apply_top_p(one, 0.01f);
  EXPECT_EQ(kept_count(one), 1u);
  EXPECT_FALSE(std::isinf(one[1]));
}

TEST(Sampler, MinPDropsTokensBelowTheScaledMaximum) {
  Rng rng(testing::fresh_seed());
  std::vector<float> logits = random_logits(400, rng);
  const std::vector<double> p = softmax_of(logits);
  const double p_max = *std::max_element(p.begin(), p.end());
  apply_min_p(logits, 0.05f);
  for (size_t i = 0; i < p.size(); ++i) {
    if (std::abs(p[i] - 0.05 * p_max) < 1e-12) continue;  // on the boundary: rounding decides
    EXPECT_EQ(std::isinf(logits[i]), p[i] < 0.05 * p_max) << i;
  }
}

TEST(Sampler, DrawsFollowTheDistribution) {
  Sampler sampler(SamplingParams{.temperature = 1.0f, .seed = testing::fresh_seed()});
  const std::vector<double> target = {0.5, 0.3, 0.15, 0.05};
  std::vector<int> counts(4);
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    std::vector<float> logits;
    for (double p : target) logits.push_back(static_cast<float>(std::log(p)));
    ++counts[sampler.sample(logits, {})];
  }
  for (size_t i = 0; i < target.size(); ++i) {
    const double sigma = std::sqrt(target[i] * (1 - target[i]) / draws);
    EXPECT_NEAR(counts[i] / static_cast<double>(draws), target[i], 5 * sigma) << i;
  }
  // Temperature 2 flattens: token 3's share rises to p^(1/2) normalised.
  Sampler hot(SamplingParams{.temperature = 2.0f, .seed = 11});
  int rare = 0;
  for (int i = 0; i < draws; ++i) {
    std::vector<float> logits;
    for (double p : target) logits.push_back(static_cast<float>(std::log(p)));
    rare += hot.sample(logits, {}) == 3;
  }
  double norm = 0;
  for (double p : target) norm += std::sqrt(p);
  EXPECT_NEAR(rare / static_cast<double>(draws), std::sqrt(0.05) / norm, 0.015);
}

TEST(Sampler, NeverDrawsAFilteredToken) {
  Rng rng(testing::fresh_seed());
  Sampler sampler(SamplingParams{.temperature = 1.5f, .top_k = 3, .seed = 5});
  for (int i = 0; i < 500; ++i) {
    std::vector<float> logits = random_logits(50, rng, 1.0);
    const std::vector<float> original = logits;
    const int32_t token = sampler.sample(logits, {});
    EXPECT_LT(std::count_if(original.begin(), original.end(), [&](float l) { return l > original[token]; }),
              3);
  }
}

TEST(Sampler, SameSeedSameTokens) {
  Rng rng(testing::fresh_seed());
  std::vector<std::vector<float>> steps;
  for (int i = 0; i < 200; ++i) steps.push_back(random_logits(100, rng, 1.0));
  auto run = [&](uint64_t seed) {
    Sampler sampler(
        SamplingParams{.temperature = 0.9f, .top_k = 40, .top_p = 0.95f, .min_p = 0.01f, .seed = seed});
    std::vector<int32_t> tokens;
    for (const auto& s : steps) {
      std::vector<float> logits = s;
      tokens.push_back(sampler.sample(logits, tokens));
    }
    return tokens;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

// The counter draw: a pure function of (seed, step), fixed values (a change of the generator changes every
// seeded run and must be deliberate), uniform on [0, 1).
TEST(Sampler, CounterDrawIsFixedAndUniform) {
  EXPECT_EQ(counter_uniform24(0, 0), 14819496u);  // splitmix64, computed independently (Python)
  EXPECT_EQ(counter_uniform24(0, 1), 7239838u);
  EXPECT_EQ(counter_uniform24(42, 0), 10001215u);
  EXPECT_EQ(counter_uniform24(42, 7), 2565124u);
  EXPECT_EQ(counter_uniform(42, 7), 2565124.0 / 16777216.0);
  const int draws = 20000;
  double sum = 0;
  int distinct_seed_equal = 0;
  for (int i = 0; i < draws; ++i) {
    const double u = counter_uniform(7, static_cast<uint64_t>(i));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    distinct_seed_equal +=
        counter_uniform24(7, static_cast<uint64_t>(i)) == counter_uniform24(8, static_cast<uint64_t>(i));
  }
  EXPECT_NEAR(sum / draws, 0.5, 5 * std::sqrt(1.0 / 12 / draws));
  EXPECT_LT(distinct_seed_equal, 3);
}

// Call n of a Sampler draws counter_uniform(seed, n), greedy calls included in the count: two equally likely
// tokens give token 0 exactly when u < 1/2.
TEST(Sampler, CallNDrawsTheCounterUniformOfStepN) {
  const uint64_t seed = testing::fresh_seed();
  Sampler sampler(SamplingParams{.temperature = 1.0f, .seed = seed});
  for (uint64_t n = 0; n < 200; ++n) {
    EXPECT_EQ(sampler.step(), n);
    std::vector<float> logits = {0.25f, 0.25f};
    ASSERT_EQ(sampler.sample(logits, {}), counter_uniform(seed, n) < 0.5 ? 0 : 1)
        << "seed " << seed << " step " << n;
  }
  Sampler greedy(SamplingParams{});
  std::vector<float> logits = {1.0f, 2.0f};
  greedy.sample(logits, {});
  EXPECT_EQ(greedy.step(), 1u);
}

TEST(Sampler, RejectsBadParameters) {
  EXPECT_THROW(Sampler(SamplingParams{.temperature = -1.0f}), Error);
  EXPECT_THROW(Sampler(SamplingParams{.top_k = -1}), Error);
  EXPECT_THROW(Sampler(SamplingParams{.top_p = 0.0f}), Error);
  EXPECT_THROW(Sampler(SamplingParams{.top_p = 1.5f}), Error);
  EXPECT_THROW(Sampler(SamplingParams{.min_p = 2.0f}), Error);
  EXPECT_THROW(Sampler(SamplingParams{.repetition_penalty = 0.0f}), Error);
  EXPECT_EQ(SamplingParams{}.describe(), "greedy");
}

// NaN/Inf logits are the model's fault and are reported; a temperature so small that logit / T overflows
// takes its limit (greedy) instead of a NaN softmax that would pick the last token.
TEST(Sampler, NonFiniteLogitsAndOverflowingTemperatures) {
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    std::vector<float> logits = {0.5f, bad, 1.0f};
    Sampler sampler(SamplingParams{.temperature = 0.7f});
    EXPECT_THROW(sampler.sample(logits, {}), Error);
  }
  std::vector<float> logits = {0.5f, 3.0f, -2.0f, 1.0f};
  Sampler sampler(SamplingParams{.temperature = 1e-39f, .seed = 7});
  for (int i = 0; i < 20; ++i) {
    std::vector<float> copy = logits;
    EXPECT_EQ(sampler.sample(copy, {}), 1);
  }
}

}  // namespace
}  // namespace qllm
