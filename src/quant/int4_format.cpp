// INT4 scheme names, shape validation, the stored container, nibble packing and error metrics.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <string>

#include "core/checked_math.h"
#include "qllm/error.h"
#include "qllm/quant.h"

namespace qllm {

namespace {
std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}
}  // namespace

std::string_view granularity_name(Granularity granularity) {
  switch (granularity) {
    case Granularity::Global:
      return "GLOBAL";
    case Granularity::Rowwise:
      return "ROWWISE";
    case Granularity::Groupwise:
      return "GROUPWISE";
  }
  return "?";
}

std::string_view scale_search_name(ScaleSearch search) {
  switch (search) {
    case ScaleSearch::None:
      return "none";
    case ScaleSearch::Mse:
      return "mse";
    case ScaleSearch::Mae:
      return "mae";
  }
  return "?";
}

Granularity parse_granularity(std::string_view name) {
  const std::string s = lowercase(name);
  if (s == "global") return Granularity::Global;
  if (s == "rowwise") return Granularity::Rowwise;
  if (s == "groupwise") return Granularity::Groupwise;
  fail("unknown quantization granularity '{}' (expected global, rowwise or groupwise)", name);
}

ScaleSearch parse_scale_search(std::string_view name) {
  const std::string s = lowercase(name);
  if (s == "none") return ScaleSearch::None;
  if (s == "mse") return ScaleSearch::Mse;
  if (s == "mae") return ScaleSearch::Mae;
  fail("unknown scale search '{}' (expected none, mse or mae)", name);
}

std::string Int4Scheme::describe() const {
  std::string s = lowercase(granularity_name(granularity));
  if (granularity == Granularity::Groupwise) s += fmt::format(" g{}", group_size);
  s += min_offset ? " min" : (zero_point ? " asym" : " sym");
  s += fmt::format(" {}-scale search={}", dtype_name(scale_dtype), scale_search_name(search));
  return s;
}

GroupLayout validate_int4_shape(int64_t rows, int64_t cols, const Int4Scheme& scheme) {
  QLLM_CHECK(rows > 0 && cols > 0, "INT4 matrix shape [{}, {}] must be positive", rows, cols);
  const int64_t elements = checked_mul(rows, cols, fmt::format("INT4 matrix shape [{}, {}]", rows, cols));
  QLLM_CHECK(cols % 2 == 0, "INT4 matrix shape [{}, {}]: K = {} must be even (two weights per byte)", rows,
             cols, cols);
  QLLM_CHECK(scheme.scale_dtype == DType::F16 || scheme.scale_dtype == DType::BF16,
             "INT4 scales must be f16 or bf16, not {}", dtype_name(scheme.scale_dtype));
  QLLM_CHECK(!(scheme.min_offset && scheme.zero_point),
             "INT4 scheme: a group has either a zero point or a minimum (min offset), not both");
  switch (scheme.granularity) {
    case Granularity::Global:
      return {rows, cols, elements, 0, 1};
    case Granularity::Rowwise:
      return {rows, cols, cols, 1, rows};
    case Granularity::Groupwise: {
      const int64_t g = scheme.group_size;
      QLLM_CHECK(g > 0, "group size must be a positive even number, got {}", g);
      QLLM_CHECK(g % 2 == 0, "group size {} must be even (groups start on byte boundaries)", g);
      // g need not divide K: the last group of each row is then partial (docs/FORMATS.md, "Groups").
      const int64_t per_row = (cols + g - 1) / g;
      return {rows, cols, g, per_row,
              checked_mul(rows, per_row, fmt::format("INT4 groups of [{}, {}] with g {}", rows, cols, g))};
    }
  }
  fail("unknown granularity");
}

size_t Int4Matrix::stored_bytes() const {
  return packed.size() * sizeof(uint8_t) + scales.size() * sizeof(uint16_t) + zeros.size() * sizeof(uint8_t) +
         mins.size() * sizeof(uint16_t);
}

double Int4Matrix::compression(DType source) const {
  return static_cast<double>(rows * cols) * static_cast<double>(dtype_size(source)) /
         static_cast<double>(stored_bytes());
}

float Int4Matrix::scale(int64_t group) const {
  const uint16_t bits = scales[static_cast<size_t>(group)];
  return scheme.scale_dtype == DType::BF16 ? bf16_bits_to_float(bits) : half_bits_to_float(bits);
}

float Int4Matrix::min(int64_t group) const {
  const uint16_t bits = mins[static_cast<size_t>(group)];
  return scheme.scale_dtype == DType::BF16 ? bf16_bits_to_float(bits) : half_bits_to_float(bits);
}

std::vector<uint8_t> pack_nibbles_u8(std::span<const uint8_t> nibbles) {
  QLLM_CHECK(nibbles.size() % 2 == 0, "packing {} nibbles into bytes needs an even count", nibbles.size());
  std::vector<uint8_t> out(nibbles.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    QLLM_CHECK(nibbles[2 * i] < 16 && nibbles[2 * i + 1] < 16, "value at {} is not a 4-bit value", 2 * i);
    out[i] = static_cast<uint8_t>(nibbles[2 * i] | (nibbles[2 * i + 1] << 4));
  }
  return out;
}

std::vector<uint32_t> pack_nibbles_u32(std::span<const uint8_t> nibbles) {
  QLLM_CHECK(nibbles.size() % 8 == 0, "packing {} nibbles into 32-bit words needs a multiple of 8",
             nibbles.size());
  std::vector<uint32_t> out(nibbles.size() / 8);
  for (size_t i = 0; i < out.size(); ++i) {
    uint32_t word = 0;
    for (int j = 0; j < 8; ++j) {
      QLLM_CHECK(nibbles[8 * i + j] < 16, "value at {} is not a 4-bit value", 8 * i + j);
      word |= static_cast<uint32_t>(nibbles[8 * i + j]) << (4 * j);
    }
    out[i] = word;
  }
  return out;
}

std::vector<uint8_t> unpack_nibbles(std::span<const uint8_t> packed, int64_t count) {
  QLLM_CHECK(count >= 0 && static_cast<size_t>(count) <= packed.size() * 2,
             "cannot unpack {} nibbles from {} bytes", count, packed.size());
  std::vector<uint8_t> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) out[i] = (i & 1) ? packed[i / 2] >> 4 : packed[i / 2] & 0x0f;
  return out;
}

std::vector<uint8_t> unpack_nibbles(std::span<const uint32_t> packed, int64_t count) {
  QLLM_CHECK(count >= 0 && static_cast<size_t>(count) <= packed.size() * 8,
             "cannot unpack {} nibbles from {} words", count, packed.size());
  std::vector<uint8_t> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) out[i] = (packed[i / 8] >> (4 * (i % 8))) & 0x0f;
  return out;
}

QuantError measure_error(std::span<const float> original, std::span<const float> reconstructed) {
  QLLM_CHECK(original.size() == reconstructed.size() && !original.empty(),
             "error metrics need two equal, non-empty arrays ({} vs {})", original.size(),
             reconstructed.size());
  double abs_sum = 0, sq_err = 0, sq_ref = 0, max_abs = 0;
  bool any_nan = false;
  for (size_t i = 0; i < original.size(); ++i) {
    const double d = static_cast<double>(original[i]) - static_cast<double>(reconstructed[i]);
    any_nan |= std::isnan(d);
    abs_sum += std::fabs(d);
    sq_err += d * d;
    sq_ref += static_cast<double>(original[i]) * original[i];
    max_abs = std::max(max_abs, std::fabs(d));
  }
  if (any_nan) max_abs = std::nan("");  // std::max would silently skip NaN: a NaN must never pass a bound
  QuantError e;
  e.mae = abs_sum / static_cast<double>(original.size());
  e.max_abs_err = max_abs;
  e.rel_fro_err = sq_ref > 0 ? std::sqrt(sq_err / sq_ref) : 0.0;
  return e;
}

}  // namespace qllm
