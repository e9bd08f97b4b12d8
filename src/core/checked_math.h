// Sizes read from files and flags multiply into element counts and byte sizes. A product that wraps around
// 64 bits indexes out of bounds and one that does not fit in memory ends in std::bad_alloc with no word of
// what was asked for; these checks turn both into a qllm::Error naming the quantity.
#pragma once

#include <cstdint>
#include <string_view>

#include "qllm/error.h"

namespace qllm {

// a * b, or qllm::Error "<what>: a x b overflows 64 bits".
inline int64_t checked_mul(int64_t a, int64_t b, std::string_view what) {
  int64_t product = 0;
  QLLM_CHECK(!__builtin_mul_overflow(a, b, &product), "{}: {} x {} overflows 64 bits", what, a, b);
  return product;
}

// Bytes of physical memory of this machine (0 when unknown).
uint64_t physical_memory_bytes();

// qllm::Error "<what> needs N GiB, more than this machine's M GiB of memory" when `bytes` cannot fit.
void check_fits_in_memory(uint64_t bytes, std::string_view what);

}  // namespace qllm
