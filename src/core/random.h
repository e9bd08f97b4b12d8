// Seeded random numbers that are the same on every platform and compiler (std::normal_distribution is
// not), so that "--seed 0" names one matrix everywhere: CPU tests, GPU tests and benchmark tables.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>

#include "qllm/half.h"

namespace qllm {

// xoshiro256** seeded through splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& word : state_) word = splitmix64(seed);
  }

  uint64_t next_u64() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Uniform integer in [0, bound).
  uint64_t below(uint64_t bound) { return next_u64() % bound; }

  // Standard normal by Box-Muller (both values used).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    spare_ = radius * std::sin(2.0 * std::numbers::pi * u2);
    has_spare_ = true;
    return radius * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  uint64_t state_[4];
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// Fills with N(mean, stddev^2) values rounded to the element type.
inline void fill_normal(std::span<float> out, Rng& rng, double mean = 0.0, double stddev = 1.0) {
  for (auto& v : out) v = static_cast<float>(mean + stddev * rng.normal());
}
inline void fill_normal(std::span<Half> out, Rng& rng, double mean = 0.0, double stddev = 1.0) {
  for (auto& v : out) v = to_half(static_cast<float>(mean + stddev * rng.normal()));
}
inline void fill_normal(std::span<BFloat16> out, Rng& rng, double mean = 0.0, double stddev = 1.0) {
  for (auto& v : out) v = to_bf16(static_cast<float>(mean + stddev * rng.normal()));
}

}  // namespace qllm
