// CPU reference top log-probabilities (the spec of top_logprobs.cu), order and arithmetic as top_logprobs.h.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/sampling/top_logprobs.h"
#include "qllm/half.h"

namespace qllm {

bool top_logprobs_of_row(std::span<const float> row, int k, int32_t* ids, float* logprobs) {
  float max = -std::numeric_limits<float>::infinity();
  bool finite = true;
  for (float l : row) {
    finite = finite && std::isfinite(l);
    max = std::fmax(max, l);
  }
  if (!finite) {
    std::fill_n(ids, k, -1);
    std::fill_n(logprobs, k, std::numeric_limits<float>::quiet_NaN());
    return false;
  }
  double sum = 0.0;
  for (float l : row) sum += std::exp(static_cast<double>(l) - max);
  const double log_norm = std::log(sum) + max;
  std::vector<int32_t> order(row.size());
  std::iota(order.begin(), order.end(), 0);
  auto value = [&](int32_t id) { return row[static_cast<size_t>(id)]; };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return value(a) > value(b) || (value(a) == value(b) && a < b);
  });
  for (int j = 0; j < k; ++j) {
    ids[j] = order[static_cast<size_t>(j)];
    logprobs[j] = static_cast<float>(static_cast<double>(value(ids[j])) - log_norm);
  }
  return true;
}

void top_logprobs_ref(const TopLogProbsParams& p) {
  const auto* bits = static_cast<const uint16_t*>(p.logits);
  const bool bf16 = p.dtype == DType::BF16;
  std::vector<float> row(static_cast<size_t>(p.vocab));
  for (int64_t r = 0; r < p.rows; ++r) {
    for (int64_t i = 0; i < p.vocab; ++i) {
      const uint16_t b = bits[r * p.vocab + i];
      row[static_cast<size_t>(i)] = bf16 ? bf16_bits_to_float(b) : half_bits_to_float(b);
    }
    if (!top_logprobs_of_row(row, p.k, p.ids + r * p.k, p.logprobs + r * p.k) && p.error_flag != nullptr) {
      *p.error_flag = 1;
    }
  }
}

}  // namespace qllm
