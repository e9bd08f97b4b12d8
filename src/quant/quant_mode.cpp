#include "quant/quant_mode.h"

#include <fmt/format.h>

#include <charconv>

#include "core/checked_math.h"
#include "qllm/error.h"

namespace qllm {

namespace {

constexpr std::string_view kForms = "bf16, f16, int4-global, int4-rowwise, int4-g<N>, int4-g<N>-asym or int8";

}  // namespace

QuantMode QuantMode::parse(std::string_view name) {
  QuantMode mode;
  if (name == "bf16" || name == "f16") {
    mode.dense_dtype = name == "bf16" ? DType::BF16 : DType::F16;
    return mode;
  }
  if (name == "int8") {
    mode.kind = Kind::Int8;
    return mode;
  }
  QLLM_CHECK(name.starts_with("int4-"), "unknown quantization mode '{}' (expected {})", name, kForms);
  mode.kind = Kind::Int4;
  mode.int4.search = ScaleSearch::None;  // round-to-nearest, the standard definition
  mode.int4.scale_dtype = DType::BF16;   // the W4A16 kernels hold scales in the activation dtype (bf16)
  std::string_view rest = name.substr(5);
  if (rest.ends_with("-asym")) {
    mode.int4.zero_point = true;
    rest.remove_suffix(5);
  }
  if (rest == "global" || rest == "rowwise") {
    mode.int4.granularity = rest == "global" ? Granularity::Global : Granularity::Rowwise;
    return mode;
  }
  int64_t group = 0;
  const bool number =
      rest.size() > 1 && rest[0] == 'g' &&
      std::from_chars(rest.data() + 1, rest.data() + rest.size(), group).ptr == rest.data() + rest.size();
  QLLM_CHECK(number, "unknown quantization mode '{}' (expected {})", name, kForms);
  QLLM_CHECK(group >= 16 && group <= 4096 && group % 16 == 0,
             "quantization mode '{}': the group size must be a multiple of 16 from 16 to 4096", name);
  mode.int4.granularity = Granularity::Groupwise;
  mode.int4.group_size = group;
  return mode;
}

std::string QuantMode::name() const {
  switch (kind) {
    case Kind::Dense:
      return std::string(dtype_name(dense_dtype));
    case Kind::Int8:
      return "int8";
    case Kind::Int4: {
      // "-min": GGUF Q4_1's min offset, run as stored (a name to show; qllm does not quantize to it).
      const std::string asym = int4.zero_point ? "-asym" : (int4.min_offset ? "-min" : "");
      switch (int4.granularity) {
        case Granularity::Global:
          return "int4-global" + asym;
        case Granularity::Rowwise:
          return "int4-rowwise" + asym;
        case Granularity::Groupwise:
          return fmt::format("int4-g{}{}", int4.group_size, asym);
      }
    }
  }
  return "?";
}

uint64_t QuantMode::stored_bytes(int64_t rows, int64_t cols) const {
  const auto elements = static_cast<uint64_t>(checked_mul(rows, cols, "weight shape"));
  switch (kind) {
    case Kind::Dense:
      return elements * dtype_size(dense_dtype);
    case Kind::Int8:
      return elements + static_cast<uint64_t>(rows) * sizeof(float);
    case Kind::Int4: {
      const uint64_t groups_per_row =
          int4.granularity == Granularity::Groupwise
              ? static_cast<uint64_t>((cols + int4.group_size - 1) / int4.group_size)
              : 1;
      const uint64_t groups = int4.granularity == Granularity::Global ? 1 : rows * groups_per_row;
      return elements / 2 + groups * (2 + (int4.zero_point ? 1 : 0) + (int4.min_offset ? 2 : 0));
    }
  }
  return 0;
}

ModelQuant ModelQuant::parse(std::string_view linear, std::string_view lm_head) {
  ModelQuant q;
  q.linear = QuantMode::parse(linear);
  q.lm_head = lm_head.empty() || lm_head == "same" ? q.linear : QuantMode::parse(lm_head);
  return q;
}

std::string ModelQuant::name() const {
  const std::string head = lm_head.name();
  std::string out = head == linear.name() ? head : fmt::format("{}, lm_head {}", linear.name(), head);
  const DType fallback = linear.is_dense() && linear.dense_dtype == DType::F16 ? DType::F16 : DType::BF16;
  if (activation && *activation != fallback) out += fmt::format(", {} activations", dtype_name(*activation));
  return out;
}

}  // namespace qllm
