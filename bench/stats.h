// Summary statistics of repeated timings.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace qllm::bench {

struct Timing {
  double median_ms = 0;
  double min_ms = 0;
  double max_ms = 0;
  double mean_ms = 0;
  double stddev_ms = 0;
  int reps = 0;
};

inline Timing summarize(std::vector<double> samples_ms) {
  Timing t;
  if (samples_ms.empty()) return t;
  std::sort(samples_ms.begin(), samples_ms.end());
  const size_t n = samples_ms.size();
  t.reps = static_cast<int>(n);
  t.median_ms = n % 2 ? samples_ms[n / 2] : 0.5 * (samples_ms[n / 2 - 1] + samples_ms[n / 2]);
  t.min_ms = samples_ms.front();
  t.max_ms = samples_ms.back();
  double sum = 0, sq = 0;
  for (double s : samples_ms) sum += s;
  t.mean_ms = sum / static_cast<double>(n);
  for (double s : samples_ms) sq += (s - t.mean_ms) * (s - t.mean_ms);
  t.stddev_ms = n > 1 ? std::sqrt(sq / static_cast<double>(n - 1)) : 0.0;
  return t;
}

}  // namespace qllm::bench
