#include "tests/gpu/op_harness.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "qllm/half.h"

namespace qllm::testing {

namespace {

std::map<std::string, OpCaseFactory>& registry() {
  static std::map<std::string, OpCaseFactory> factories;  // by family name: a stable test order
  return factories;
}

}  // namespace

const char* metric_name(Metric metric) {
  switch (metric) {
    case Metric::MaxAbs:
      return "max_abs";
    case Metric::MaxRel:
      return "max_rel";
    case Metric::RelFro:
      return "rel_fro";
    case Metric::Exact:
      return "mismatches";
  }
  return "?";
}

std::string OpCase::name() const {
  return fmt::format("{}/{}/{}", op, shape, dtype);
}

OpResult compare(std::span<const float> got, std::span<const float> ref, Metric metric, double floor) {
  OpResult r;
  if (got.size() != ref.size()) {
    r.error = std::numeric_limits<double>::infinity();
    r.detail = fmt::format("{} outputs, {} expected", got.size(), ref.size());
    return r;
  }
  double worst = 0, diff_sq = 0, ref_sq = 0;
  int64_t worst_index = -1, mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) {
      r.error = std::numeric_limits<double>::infinity();
      r.detail = fmt::format("element {} is {} (unwritten or overflowed); reference {}", i, got[i], ref[i]);
      return r;
    }
    const double d = std::abs(static_cast<double>(got[i]) - ref[i]);
    diff_sq += d * d;
    ref_sq += static_cast<double>(ref[i]) * ref[i];
    mismatches += got[i] != ref[i];
    const double e = metric == Metric::MaxRel ? d / std::max<double>(std::abs(ref[i]), floor) : d;
    if (e > worst || worst_index < 0) worst = e, worst_index = static_cast<int64_t>(i);
  }
  switch (metric) {
    case Metric::MaxAbs:
    case Metric::MaxRel:
      r.error = worst;
      break;
    case Metric::RelFro:
      r.error = ref_sq > 0 ? std::sqrt(diff_sq / ref_sq) : std::sqrt(diff_sq);
      break;
    case Metric::Exact:
      r.error = static_cast<double>(mismatches);
      break;
  }
  if (worst_index >= 0) {
    r.detail = fmt::format("worst element {}: got {} reference {}", worst_index,
                           got[static_cast<size_t>(worst_index)], ref[static_cast<size_t>(worst_index)]);
  }
  return r;
}

OpResult compare_exact(std::span<const int32_t> got, std::span<const int32_t> ref) {
  OpResult r;
  if (got.size() != ref.size()) {
    r.error = std::numeric_limits<double>::infinity();
    r.detail = fmt::format("{} outputs, {} expected", got.size(), ref.size());
    return r;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == ref[i]) continue;
    if (r.error == 0) r.detail = fmt::format("first mismatch at {}: got {} reference {}", i, got[i], ref[i]);
    r.error += 1;
  }
  return r;
}

std::vector<uint16_t> to_bf16_bits(std::span<const float> values) {
  std::vector<uint16_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = float_to_bf16_bits(values[i]);
  return out;
}
std::vector<float> from_bf16_bits(std::span<const uint16_t> bits) {
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = bf16_bits_to_float(bits[i]);
  return out;
}
std::vector<float> round_to_bf16(std::vector<float> values) {
  for (float& v : values) v = bf16_bits_to_float(float_to_bf16_bits(v));
  return values;
}
std::vector<uint16_t> to_f16_bits(std::span<const float> values) {
  std::vector<uint16_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = float_to_half_bits(values[i]);
  return out;
}
std::vector<float> from_f16_bits(std::span<const uint16_t> bits) {
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = half_bits_to_float(bits[i]);
  return out;
}
std::vector<float> round_to_f16(std::vector<float> values) {
  for (float& v : values) v = half_bits_to_float(float_to_half_bits(v));
  return values;
}

bool register_op_cases(const char* family, OpCaseFactory factory) {
  registry()[family] = factory;
  return true;
}

std::vector<OpCase> all_op_cases() {
  std::vector<OpCase> cases;
  for (const auto& [family, factory] : registry()) {
    std::vector<OpCase> more = factory();
    cases.insert(cases.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  }
  return cases;
}

}  // namespace qllm::testing
