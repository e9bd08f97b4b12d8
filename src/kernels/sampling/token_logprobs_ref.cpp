// CPU reference token log-probabilities (the spec of token_logprobs.cu), arithmetic as token_logprobs.h.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/sampling/token_logprobs.h"
#include "qllm/half.h"

namespace qllm {

void token_logprobs_ref(const TokenLogProbsParams& p) {
  const auto* bits = static_cast<const uint16_t*>(p.logits);
  const bool bf16 = p.dtype == DType::BF16;
  std::vector<float> row(static_cast<size_t>(p.vocab));
  for (int64_t r = 0; r < p.rows; ++r) {
    const int32_t target = p.targets[r];
    double nll = 0.0;
    if (target < -1 || target >= p.vocab) {
      nll = std::numeric_limits<double>::quiet_NaN();
    } else if (target >= 0) {
      float max = -std::numeric_limits<float>::infinity();
      bool finite = true;
      for (int64_t i = 0; i < p.vocab; ++i) {
        const uint16_t b = bits[r * p.vocab + i];
        row[i] = bf16 ? bf16_bits_to_float(b) : half_bits_to_float(b);
        finite = finite && std::isfinite(row[i]);
        max = std::fmax(max, row[i]);
      }
      double sum = 0.0;
      for (float l : row) sum += std::exp(static_cast<double>(l) - max);
      nll = finite ? std::log(sum) + max - static_cast<double>(row[target])
                   : std::numeric_limits<double>::quiet_NaN();
    }
    if (std::isnan(nll) && p.error_flag != nullptr) *p.error_flag = 1;
    if (p.nll != nullptr) p.nll[r] = nll;
    if (p.logprob != nullptr) p.logprob[r] = static_cast<float>(-nll);
  }
}

}  // namespace qllm
