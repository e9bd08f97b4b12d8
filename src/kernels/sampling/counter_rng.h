// The counter-based uniform draw shared by the CPU sampler (src/model/sampler.cpp) and the GPU sampling
// kernels (sampling.cu): draw number `step` of a request seeded with `seed` is a pure function of the two,
// so the CPU and the GPU take the same uniform for the same (seed, step), and a GPU kernel needs no RNG
// state beyond the step counter. Hand-written: splitmix64 (Steele, Lea, Flood 2014) is a few lines.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define QLLM_RNG_HD __host__ __device__ __forceinline__
#else
#define QLLM_RNG_HD inline
#endif

namespace qllm {

// splitmix64's output function: a bijective mix of 64 bits.
QLLM_RNG_HD uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The top 24 bits of output number `step` of a splitmix64 stream whose state starts at mix(seed) (mixing
// the seed first keeps nearby seeds from being shifted copies of one stream): an integer in [0, 2^24).
QLLM_RNG_HD uint32_t counter_uniform24(uint64_t seed, uint64_t step) {
  const uint64_t state = splitmix64_mix(seed) + (step + 1) * 0x9e3779b97f4a7c15ull;
  return static_cast<uint32_t>(splitmix64_mix(state) >> 40);
}

// The same draw as a number in [0, 1): u = counter_uniform24 / 2^24, exact in float and double.
QLLM_RNG_HD double counter_uniform(uint64_t seed, uint64_t step) {
  return static_cast<double>(counter_uniform24(seed, step)) * 0x1.0p-24;
}

}  // namespace qllm
