#include "model/quantized_checkpoint.h"

#include <fmt/format.h>

#include <cctype>
#include <cstring>

#include "core/checked_math.h"
#include "core/json.h"
#include "qllm/error.h"

namespace qllm {

namespace {

using nlohmann::json;

// AWQ packs the eight columns 8i + m of a 32-bit word at nibble position kAwqPosition[m] (its pack order
// [0, 2, 4, 6, 1, 3, 5, 7] lists the column held by each position; this is the inverse).
constexpr int kAwqPosition[8] = {0, 4, 1, 5, 2, 6, 3, 7};

int64_t group_elems(const Int4Scheme& s, int64_t cols) {
  return s.granularity == Granularity::Groupwise ? s.group_size : cols;
}

int64_t groups_per_row(const Int4Scheme& s, int64_t cols) {
  const int64_t g = group_elems(s, cols);
  return (cols + g - 1) / g;
}

uint32_t load_u32(const std::byte* data, size_t i) {
  uint32_t v;
  std::memcpy(&v, data + 4 * i, 4);  // safetensors offsets need not be aligned
  return v;
}

uint16_t load_u16(const std::byte* data, size_t i) {
  uint16_t v;
  std::memcpy(&v, data + 2 * i, 2);
  return v;
}

void store_u32(std::span<std::byte> out, size_t i, uint32_t v) {
  std::memcpy(out.data() + 4 * i, &v, 4);
}

// A tensor that must exist with one of `dtypes` and exactly `shape`; its name goes into `used`.
TensorView checked(const SafetensorsCheckpoint& ckpt, const std::string& name,
                   std::initializer_list<DType> dtypes, const std::vector<int64_t>& shape,
                   std::set<std::string>& used) {
  QLLM_CHECK(ckpt.contains(name), "{}: missing tensor '{}' (a quantized weight needs it, shape {})",
             ckpt.source(), name, shape_string(shape));
  const TensorView t = ckpt.tensor(name);
  bool dtype_ok = false;
  std::vector<std::string_view> names;
  for (const DType d : dtypes) {
    dtype_ok |= t.dtype() == d;
    names.push_back(safetensors_dtype_name(d));
  }
  QLLM_CHECK(dtype_ok, "{}: tensor '{}' has dtype {}, expected {}", *t.file, name,
             safetensors_dtype_name(t.dtype()), fmt::join(names, " or "));
  QLLM_CHECK(t.shape() == shape, "{}: tensor '{}' has shape {}, expected {}", *t.file, name,
             shape_string(t.shape()), shape_string(shape));
  used.insert(name);
  return t;
}

DType scale_dtype_of(const TensorView& t) {
  return t.dtype() == DType::BF16 ? DType::BF16 : DType::F16;
}

void set_nibble(std::vector<uint8_t>& packed, int64_t flat, uint32_t u) {
  uint8_t& byte = packed[static_cast<size_t>(flat / 2)];
  byte = static_cast<uint8_t>((flat & 1) ? (byte & 0x0f) | (u << 4) : (byte & 0xf0) | u);
}

Int4Matrix empty_matrix(const QuantizationConfig& config, int64_t rows, int64_t cols, DType scale_dtype) {
  Int4Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.scheme = config.scheme;
  m.scheme.scale_dtype = scale_dtype;
  m.packed.assign(static_cast<size_t>(checked_mul(rows, cols, "INT4 weight") / 2), 0);
  return m;
}

Int4Matrix read_qllm(const SafetensorsCheckpoint& ckpt, const QuantizationConfig& config,
                     const std::string& base, int64_t rows, int64_t cols, std::set<std::string>& used) {
  const bool global = config.scheme.granularity == Granularity::Global;
  const int64_t groups = global ? 1 : groups_per_row(config.scheme, cols);
  const std::vector<int64_t> group_shape =
      global ? std::vector<int64_t>{1, 1} : std::vector<int64_t>{rows, groups};
  const TensorView scales =
      checked(ckpt, base + ".scales", {DType::F16, DType::BF16}, group_shape, used);
  const TensorView qweight = checked(ckpt, base + ".qweight", {DType::U8}, {rows, cols / 2}, used);
  QLLM_CHECK(scale_dtype_of(scales) == config.scheme.scale_dtype,
             "{}: tensor '{}.scales' has dtype {} but {}.scale_dtype is {}", *scales.file, base,
             safetensors_dtype_name(scales.dtype()), config.label, dtype_name(config.scheme.scale_dtype));
  Int4Matrix m = empty_matrix(config, rows, cols, scale_dtype_of(scales));
  std::memcpy(m.packed.data(), qweight.data, m.packed.size());
  m.scales.resize(static_cast<size_t>(scales.numel()));
  for (size_t i = 0; i < m.scales.size(); ++i) m.scales[i] = load_u16(scales.data, i);
  if (config.scheme.zero_point) {
    const TensorView zeros = checked(ckpt, base + ".zeros", {DType::U8}, group_shape, used);
    m.zeros.resize(static_cast<size_t>(zeros.numel()));
    std::memcpy(m.zeros.data(), zeros.data, m.zeros.size());
  }
  return m;
}

// GPTQ and AWQ share scales [G, N] and qzeros [G, N/8]; they differ in the weights' packing and the zero's
// offset (GPTQ v1 stores zero - 1).
Int4Matrix read_gptq_awq(const SafetensorsCheckpoint& ckpt, const QuantizationConfig& config,
                         const std::string& base, int64_t rows, int64_t cols, std::set<std::string>& used) {
  const bool awq = config.format == QuantFormat::Awq;
  const std::string label = fmt::format("{}: weight '{}' [{}, {}]", ckpt.source(), base, rows, cols);
  QLLM_CHECK(rows % 8 == 0 && cols % 8 == 0,
             "{}: {} packs eight 4-bit values per int32, so N and K must be "
             "multiples of 8",
             label, quant_format_name(config.format));
  const int64_t g = group_elems(config.scheme, cols);
  const int64_t groups = groups_per_row(config.scheme, cols);
  const TensorView scales =
      checked(ckpt, base + ".scales", {DType::F16, DType::BF16}, {groups, rows}, used);
  const TensorView qweight =
      checked(ckpt, base + ".qweight", {DType::I32},
              awq ? std::vector<int64_t>{cols, rows / 8} : std::vector<int64_t>{cols / 8, rows}, used);
  const TensorView qzeros = checked(ckpt, base + ".qzeros", {DType::I32}, {groups, rows / 8}, used);
  if (!awq && ckpt.contains(base + ".g_idx")) {
    const TensorView g_idx = checked(ckpt, base + ".g_idx", {DType::I32}, {cols}, used);
    for (int64_t k = 0; k < cols; ++k) {
      const auto v = static_cast<int32_t>(load_u32(g_idx.data, static_cast<size_t>(k)));
      QLLM_CHECK(v == k / g,
                 "{}: tensor '{}.g_idx'[{}] = {}, expected {} (k / group_size): act-order (desc_act) "
                 "checkpoints are not supported",
                 *g_idx.file, base, k, v, k / g);
    }
  }
  Int4Matrix m = empty_matrix(config, rows, cols, scale_dtype_of(scales));
  const int64_t words_per_row = rows / 8;
  // Rows in parallel: a byte of `packed` holds two adjacent columns of one row, so threads never share one.
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t k = 0; k < cols; ++k) {
      const uint32_t word = awq ? load_u32(qweight.data, static_cast<size_t>(k * words_per_row + n / 8))
                                : load_u32(qweight.data, static_cast<size_t>((k / 8) * rows + n));
      const int shift = 4 * (awq ? kAwqPosition[n % 8] : static_cast<int>(k % 8));
      set_nibble(m.packed, n * cols + k, (word >> shift) & 0xf);
    }
  }
  m.scales.resize(static_cast<size_t>(rows * groups));
  if (config.scheme.zero_point) m.zeros.resize(m.scales.size());
  for (int64_t gi = 0; gi < groups; ++gi) {
    for (int64_t n = 0; n < rows; ++n) {
      m.scales[static_cast<size_t>(n * groups + gi)] =
          load_u16(scales.data, static_cast<size_t>(gi * rows + n));
      const uint32_t word = load_u32(qzeros.data, static_cast<size_t>(gi * words_per_row + n / 8));
      const int shift = 4 * (awq ? kAwqPosition[n % 8] : static_cast<int>(n % 8));
      const int z = static_cast<int>((word >> shift) & 0xf) + (awq ? 0 : 1);
      QLLM_CHECK(z <= 15,
                 "{}: tensor '{}.qzeros'[{}, {}] nibble {} holds 15, i.e. zero point 16 (GPTQ v1 stores "
                 "zero - 1): out of range 0..15",
                 *qzeros.file, base, gi, n / 8, n % 8);
      if (config.scheme.zero_point) {
        m.zeros[static_cast<size_t>(n * groups + gi)] = static_cast<uint8_t>(z);
      } else {
        QLLM_CHECK(z == 8,
                   "{}: tensor '{}.qzeros'[{}, {}] nibble {}: zero point {} in a symmetric (sym: true) "
                   "checkpoint, which needs 8",
                   *qzeros.file, base, gi, n / 8, n % 8, z);
      }
    }
  }
  return m;
}

}  // namespace

std::string_view quant_format_name(QuantFormat format) {
  switch (format) {
    case QuantFormat::Qllm:
      return "qllm";
    case QuantFormat::Gptq:
      return "gptq";
    case QuantFormat::Awq:
      return "awq";
  }
  return "?";
}

QuantFormat parse_quant_format(std::string_view name) {
  if (name == "qllm") return QuantFormat::Qllm;
  if (name == "gptq") return QuantFormat::Gptq;
  if (name == "awq") return QuantFormat::Awq;
  fail("unknown checkpoint format '{}' (expected qllm, gptq or awq)", name);
}

Int4Matrix read_int4_weight(const SafetensorsCheckpoint& ckpt, const QuantizationConfig& config,
                            const std::string& base, int64_t rows, int64_t cols,
                            std::set<std::string>& used) {
  QLLM_CHECK(cols % 2 == 0, "{}: weight '{}' has K = {}: INT4 needs an even K", ckpt.source(), base, cols);
  Int4Matrix m = config.format == QuantFormat::Qllm ? read_qllm(ckpt, config, base, rows, cols, used)
                                                    : read_gptq_awq(ckpt, config, base, rows, cols, used);
  validate_int4_matrix(m, fmt::format("{}: weight '{}'", ckpt.source(), base));
  return m;
}

namespace {

// An integer field (an alternative spelling `alt` accepted, e.g. AutoAWQ's w_bit), or `fallback` when absent.
int64_t int_field(const json& q, const char* key, const char* alt, std::optional<int64_t> fallback,
                  const std::string& label) {
  const char* found = q.contains(key) ? key : (alt && q.contains(alt) ? alt : nullptr);
  if (!found) {
    QLLM_CHECK(fallback.has_value(), "{}: missing field '{}'", label, key);
    return *fallback;
  }
  QLLM_CHECK(q[found].is_number_integer(), "{}: '{}' must be an integer, not {}", label, found,
             json_excerpt(q[found]));
  return q[found].get<int64_t>();
}

bool bool_field(const json& q, const char* key, bool fallback, const std::string& label) {
  if (!q.contains(key) || q[key].is_null()) return fallback;
  QLLM_CHECK(q[key].is_boolean(), "{}: '{}' must be true or false, not {}", label, key, json_excerpt(q[key]));
  return q[key].get<bool>();
}

std::string string_field(const json& q, const char* key, const std::string& fallback,
                         const std::string& label) {
  if (!q.contains(key) || q[key].is_null()) return fallback;
  QLLM_CHECK(q[key].is_string(), "{}: '{}' must be a string, not {}", label, key, json_excerpt(q[key]));
  return q[key].get<std::string>();
}

// group_size as GPTQ and AWQ write it: -1 for one group per row (qllm's ROWWISE), else a positive even size.
void set_group_size(Int4Scheme& s, int64_t group_size, const std::string& label) {
  if (group_size == -1) {
    s.granularity = Granularity::Rowwise;
    return;
  }
  QLLM_CHECK(group_size > 0 && group_size % 2 == 0, "{}: group_size {} must be -1 or a positive even number",
             label, group_size);
  s.granularity = Granularity::Groupwise;
  s.group_size = group_size;
}

// GPTQ v1 stores zero - 1 in 4 bits, so a zero point of 0 has no form. A group whose scale is 0 (all
// zeros: the asymmetric quantizer stores z = 0 and nibbles 0) reconstructs to +0 with any z = u, so it is
// written as z = u = 1; any other zero point of 0 is refused naming the group.
std::shared_ptr<const Int4Matrix> without_zero_points_of_0(std::shared_ptr<const Int4Matrix> matrix,
                                                           const std::string& base) {
  const Int4Matrix& m = *matrix;
  const GroupLayout layout = m.layout();
  std::shared_ptr<Int4Matrix> copy;
  for (size_t g = 0; g < m.zeros.size(); ++g) {
    if (m.zeros[g] != 0) continue;
    QLLM_CHECK(m.scale(static_cast<int64_t>(g)) == 0.0f,
               "{}: group {} of row {} has zero point 0, which GPTQ v1's qzeros (zero - 1) cannot hold; use "
               "--format qllm or awq",
               base, layout.groups_per_row ? static_cast<int64_t>(g) % layout.groups_per_row : 0,
               layout.row_of(static_cast<int64_t>(g)));
    if (!copy) copy = std::make_shared<Int4Matrix>(m);
    copy->zeros[g] = 1;
    const int64_t first = layout.first_flat(static_cast<int64_t>(g));
    for (int64_t i = 0; i < layout.size(static_cast<int64_t>(g)); ++i) set_nibble(copy->packed, first + i, 1);
  }
  return copy ? copy : matrix;
}

// qweight of GPTQ ([K/8, N]: word (i, n) holds rows k = 8i + j of column n at nibble j) or AWQ ([K, N/8]:
// word (k, i) holds columns n = 8i + m at nibble kAwqPosition[m]). One thread per word row: no word shared.
void pack_qweight(const Int4Matrix& w, bool awq, std::span<std::byte> out) {
  const int64_t word_rows = awq ? w.cols : w.cols / 8;
  const int64_t word_cols = awq ? w.rows / 8 : w.rows;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < word_rows; ++i) {
    for (int64_t c = 0; c < word_cols; ++c) {
      uint32_t word = 0;
      for (int j = 0; j < 8; ++j) {
        const int64_t n = awq ? 8 * c + j : c;
        const int64_t k = awq ? i : 8 * i + j;
        word |= static_cast<uint32_t>(w.nibble(n * w.cols + k)) << (4 * (awq ? kAwqPosition[j] : j));
      }
      store_u32(out, static_cast<size_t>(i * word_cols + c), word);
    }
  }
}

}  // namespace

std::optional<QuantizationConfig> read_quantization_config(const json& config, const std::string& file) {
  if (!config.is_object() || !config.contains("quantization_config") ||
      config["quantization_config"].is_null())
    return std::nullopt;
  const std::string label = file + ": quantization_config";
  const json& q = config["quantization_config"];
  QLLM_CHECK(q.is_object(), "{} must be an object, not {}", label, json_excerpt(q));
  QuantizationConfig c;
  c.label = label;
  const std::string method = string_field(q, "quant_method", "", label);
  QLLM_CHECK(method == "qllm" || method == "gptq" || method == "awq",
             "{}: quant_method '{}' is not supported (qllm reads qllm, gptq and awq INT4 checkpoints)", label,
             method);
  c.format = parse_quant_format(method);
  const int64_t bits = int_field(q, "bits", "w_bit", std::nullopt, label);
  QLLM_CHECK(bits == 4, "{}: bits = {}: qllm reads 4-bit checkpoints only", label, bits);
  c.scheme.scale_dtype = DType::F16;
  switch (c.format) {
    case QuantFormat::Qllm: {
      QLLM_CHECK(int_field(q, "format_version", nullptr, 1, label) == 1, "{}: format_version must be 1",
                 label);
      const std::string granularity = string_field(q, "granularity", "groupwise", label);
      c.scheme.granularity = parse_granularity(granularity);
      if (c.scheme.granularity == Granularity::Groupwise)
        set_group_size(c.scheme, int_field(q, "group_size", nullptr, std::nullopt, label), label);
      c.scheme.zero_point = bool_field(q, "zero_point", false, label);
      const std::string scale = string_field(q, "scale_dtype", "bf16", label);
      QLLM_CHECK(scale == "bf16" || scale == "f16", "{}: scale_dtype '{}' must be bf16 or f16", label, scale);
      c.scheme.scale_dtype = scale == "bf16" ? DType::BF16 : DType::F16;
      break;
    }
    case QuantFormat::Gptq: {
      set_group_size(c.scheme, int_field(q, "group_size", nullptr, 128, label), label);
      c.scheme.zero_point = !bool_field(q, "sym", true, label);
      QLLM_CHECK(!bool_field(q, "desc_act", false, label),
                 "{}: desc_act = true (act-order) is not supported: its g_idx permutes the groups", label);
      const std::string format = string_field(q, "checkpoint_format", "gptq", label);
      QLLM_CHECK(format == "gptq",
                 "{}: checkpoint_format '{}' is not supported (gptq, i.e. v1: qzeros hold "
                 "zero - 1)",
                 label, format);
      break;
    }
    case QuantFormat::Awq: {
      set_group_size(c.scheme, int_field(q, "group_size", "q_group_size", 128, label), label);
      QLLM_CHECK(bool_field(q, "zero_point", true, label), "{}: zero_point = false is not supported for awq",
                 label);
      c.scheme.zero_point = true;
      const std::string version = string_field(q, "version", "gemm", label);
      QLLM_CHECK(version == "gemm" || version == "GEMM",
                 "{}: version '{}' is not supported (gemm: qweight [K, N/8] in AWQ's order)", label, version);
      break;
    }
  }
  return c;
}

json QuantizationConfig::to_json() const {
  const bool rowwise = scheme.granularity != Granularity::Groupwise;
  const int64_t group_size = rowwise ? -1 : scheme.group_size;
  switch (format) {
    case QuantFormat::Qllm: {
      std::string granularity(granularity_name(scheme.granularity));
      for (char& ch : granularity) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      return {{"quant_method", "qllm"},
              {"format_version", 1},
              {"bits", 4},
              {"granularity", granularity},
              {"group_size", group_size},
              {"zero_point", scheme.zero_point},
              {"scale_dtype", std::string(dtype_name(scheme.scale_dtype))}};
    }
    case QuantFormat::Gptq:
      return {{"quant_method", "gptq"},    {"bits", 4},         {"group_size", group_size},
              {"sym", !scheme.zero_point}, {"desc_act", false}, {"checkpoint_format", "gptq"}};
    case QuantFormat::Awq:
      return {{"quant_method", "awq"},
              {"bits", 4},
              {"group_size", group_size},
              {"zero_point", true},
              {"version", "gemm"}};
  }
  return {};
}

void check_storable(const QuantizationConfig& config, const Int4Scheme& scheme, const std::string& name,
                    int64_t rows, int64_t cols) {
  const std::string_view format = quant_format_name(config.format);
  QLLM_CHECK(!scheme.min_offset, "{}: a min-offset scheme cannot be written ({})", name, format);
  if (config.format == QuantFormat::Qllm) return;
  QLLM_CHECK(scheme.granularity != Granularity::Global,
             "{}: int4-global has no {} form (one scale per matrix); use --format qllm", name, format);
  QLLM_CHECK(config.format != QuantFormat::Awq ||
                 (scheme.zero_point && scheme.granularity == Granularity::Groupwise),
             "{}: awq checkpoints are groupwise with zero points: use int4-g<N>-asym", name);
  QLLM_CHECK(scheme.scale_dtype == DType::F16, "{}: {} stores f16 scales, not {}", name, format,
             dtype_name(scheme.scale_dtype));
  QLLM_CHECK(rows % 8 == 0 && cols % 8 == 0,
             "{}: [{}, {}]: {} packs eight 4-bit values per int32, so N and K must be multiples of 8", name,
             rows, cols, format);
}

std::vector<TensorToWrite> int4_weight_tensors(const QuantizationConfig& config, const std::string& base,
                                               std::shared_ptr<const Int4Matrix> matrix) {
  check_storable(config, matrix->scheme, base, matrix->rows, matrix->cols);
  const Int4Matrix& m = *matrix;
  const DType scale_dtype = m.scheme.scale_dtype == DType::BF16 ? DType::BF16 : DType::F16;
  const int64_t rows = m.rows, cols = m.cols;
  std::vector<TensorToWrite> out;
  if (config.format == QuantFormat::Qllm) {
    const bool global = m.scheme.granularity == Granularity::Global;
    const std::vector<int64_t> group_shape =
        global ? std::vector<int64_t>{1, 1} : std::vector<int64_t>{rows, groups_per_row(m.scheme, cols)};
    out.push_back(
        {base + ".qweight", DType::U8, {rows, cols / 2}, {}, [matrix](std::span<std::byte> b) {
           std::memcpy(b.data(), matrix->packed.data(), b.size());
         }});
    out.push_back({base + ".scales", scale_dtype, group_shape, {}, [matrix](std::span<std::byte> b) {
                     std::memcpy(b.data(), matrix->scales.data(), b.size());
                   }});
    if (m.scheme.zero_point) {
      out.push_back({base + ".zeros", DType::U8, group_shape, {}, [matrix](std::span<std::byte> b) {
                       std::memcpy(b.data(), matrix->zeros.data(), b.size());
                     }});
    }
    return out;
  }
  const bool awq = config.format == QuantFormat::Awq;
  const int64_t groups = groups_per_row(m.scheme, cols);
  const int64_t g = group_elems(m.scheme, cols);
  if (!awq) matrix = without_zero_points_of_0(std::move(matrix), base);  // `m` may be gone from here on
  out.push_back({base + ".qweight",
                 DType::I32,
                 awq ? std::vector<int64_t>{cols, rows / 8} : std::vector<int64_t>{cols / 8, rows},
                 {},
                 [matrix, awq](std::span<std::byte> b) { pack_qweight(*matrix, awq, b); }});
  out.push_back({base + ".qzeros",
                 DType::I32,
                 {groups, rows / 8},
                 {},
                 [matrix, awq, groups](std::span<std::byte> b) {
                   const Int4Matrix& w = *matrix;
                   for (int64_t g = 0; g < groups; ++g) {
                     for (int64_t i = 0; i < w.rows / 8; ++i) {
                       uint32_t word = 0;
                       for (int64_t j = 0; j < 8; ++j) {
                         const int64_t n = 8 * i + j;
                         const uint32_t z = static_cast<uint32_t>(w.zero(n * groups + g)) - (awq ? 0 : 1);
                         word |= z << (4 * (awq ? kAwqPosition[j] : static_cast<int>(j)));
                       }
                       store_u32(b, static_cast<size_t>(g * (w.rows / 8) + i), word);
                     }
                   }
                 }});
  out.push_back({base + ".scales", scale_dtype, {groups, rows}, {}, [matrix, groups](std::span<std::byte> b) {
                   const Int4Matrix& w = *matrix;
                   for (int64_t n = 0; n < w.rows; ++n) {
                     for (int64_t g = 0; g < groups; ++g) {
                       const uint16_t s = w.scales[static_cast<size_t>(n * groups + g)];
                       std::memcpy(b.data() + 2 * (g * w.rows + n), &s, 2);
                     }
                   }
                 }});
  if (!awq) {
    out.push_back({base + ".g_idx", DType::I32, {cols}, {}, [g](std::span<std::byte> b) {
                     for (size_t k = 0; k < b.size() / 4; ++k) store_u32(b, k, static_cast<uint32_t>(k / g));
                   }});
  }
  return out;
}

}  // namespace qllm
