// GGUF reader: parsing and validation (see gguf.h for the layout), and the typed metadata getters.
#include "core/gguf.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>

#include "qllm/error.h"

namespace qllm {

static_assert(std::endian::native == std::endian::little, "GGUF files are read as little-endian");

namespace {

constexpr uint32_t kMaxDims = 4;  // ggml's GGML_MAX_DIMS
constexpr uint64_t kDefaultAlignment = 32;
constexpr std::string_view kAlignmentKey = "general.alignment";

// Indexed by ggml type id; an empty name marks an id that is not a type. Block sizes as ggml's type traits
// (ggml.c) define them: block_q8_1 is 36 bytes there (gguf-py's table says 40, for a layout ggml dropped).
constexpr std::array<GgmlTypeInfo, 36> kGgmlTypes = {{
    {"f32", 1, 4},      {"f16", 1, 2},        {"q4_0", 32, 18},    {"q4_1", 32, 20},     {"", 0, 0},
    {"", 0, 0},         {"q5_0", 32, 22},     {"q5_1", 32, 24},    {"q8_0", 32, 34},     {"q8_1", 32, 36},
    {"q2_K", 256, 84},  {"q3_K", 256, 110},   {"q4_K", 256, 144},  {"q5_K", 256, 176},   {"q6_K", 256, 210},
    {"q8_K", 256, 292}, {"iq2_xxs", 256, 66}, {"iq2_xs", 256, 74}, {"iq3_xxs", 256, 98}, {"iq1_s", 256, 50},
    {"iq4_nl", 32, 18}, {"iq3_s", 256, 110},  {"iq2_s", 256, 82},  {"iq4_xs", 256, 136}, {"i8", 1, 1},
    {"i16", 1, 2},      {"i32", 1, 4},        {"i64", 1, 8},       {"f64", 1, 8},        {"iq1_m", 256, 56},
    {"bf16", 1, 2},     {"", 0, 0},           {"", 0, 0},          {"", 0, 0},           {"tq1_0", 256, 54},
    {"tq2_0", 256, 66},
}};

constexpr std::array<std::string_view, 13> kValueTypeNames = {
    "uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
    "bool",  "string", "array",  "uint64", "int64",  "float64"};

// The fewest bytes one array element of each type takes in the file: a count of elements is checked
// against the remaining bytes with it before anything is reserved.
uint64_t min_element_bytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::U8:
    case GgufValueType::I8:
    case GgufValueType::Bool:
      return 1;
    case GgufValueType::U16:
    case GgufValueType::I16:
      return 2;
    case GgufValueType::U32:
    case GgufValueType::I32:
    case GgufValueType::F32:
      return 4;
    case GgufValueType::String:  // u64 length
    case GgufValueType::U64:
    case GgufValueType::I64:
    case GgufValueType::F64:
      return 8;
    case GgufValueType::Array:  // u32 element type + u64 count
      return 12;
  }
  return 1;
}

}  // namespace

const GgmlTypeInfo* find_ggml_type(uint32_t id) {
  if (id >= kGgmlTypes.size() || kGgmlTypes[id].name.empty()) return nullptr;
  return &kGgmlTypes[id];
}

const GgmlTypeInfo& ggml_type_info(GgmlType type) {
  const GgmlTypeInfo* info = find_ggml_type(static_cast<uint32_t>(type));
  QLLM_CHECK(info != nullptr, "ggml type id {} is not a ggml type", static_cast<uint32_t>(type));
  return *info;
}

std::string_view ggml_type_name(GgmlType type) {
  return ggml_type_info(type).name;
}

std::string_view gguf_value_type_name(GgufValueType type) {
  const auto id = static_cast<uint32_t>(type);
  return id < kValueTypeNames.size() ? kValueTypeNames[id] : std::string_view("unknown");
}

size_t GgufArray::size() const {
  return std::visit([](const auto& v) { return v.size(); }, elements);
}

int64_t GgufTensor::elements() const {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;  // the parser checked that the product fits
  return n;
}

// Reads one file image front to back. Every read names the field it reads, so that a failure says what
// was being read, where (byte offset) and in what context (which key or tensor).
class GgufParser {
 public:
  GgufParser(std::span<const std::byte> bytes, GgufFile& out) : bytes_(bytes), out_(out) {}

  void parse() {
    read_header();
    for (uint64_t i = 0; i < metadata_count_; ++i) read_metadata_entry(i);
    read_alignment();
    out_.tensors_.reserve(tensor_count_);
    for (uint64_t i = 0; i < tensor_count_; ++i) read_tensor_info(i);
    out_.data_offset_ = align_up(pos_, out_.alignment_);
    for (size_t i = 0; i < out_.tensors_.size(); ++i) locate_tensor_data(i);
    check_no_overlap();
  }

 private:
  uint64_t remaining() const { return bytes_.size() - pos_; }

  [[noreturn]] void fail_at(uint64_t offset, std::string_view field, const std::string& problem) const {
    fail("{}: {}{} at byte offset {}: {}", out_.name_, context_, field, offset, problem);
  }

  void need(uint64_t n, std::string_view field) const {
    if (n > remaining()) {
      fail_at(pos_, field,
              fmt::format("needs {} bytes but only {} remain (file size {}; truncated?)", n, remaining(),
                          bytes_.size()));
    }
  }

  template <typename T>
  T read(std::string_view field) {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(std::string_view field) {
    const uint64_t length_pos = pos_;
    const auto length = read<uint64_t>(field);
    if (length > remaining()) {
      fail_at(length_pos, field,
              fmt::format("string length {} runs past the end of the file ({} bytes remain; file size {})",
                          length, remaining(), bytes_.size()));
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), static_cast<size_t>(length));
    pos_ += length;
    return s;
  }

  // A count of items that take at least `min_bytes` each must fit in the remaining bytes: checked before
  // anything is reserved, so that a count of 2^60 fails instead of allocating.
  void check_count(uint64_t count, uint64_t min_bytes, std::string_view field, uint64_t count_pos) const {
    if (count > remaining() / min_bytes) {
      fail_at(count_pos, field,
              fmt::format("{} items of at least {} bytes each cannot fit in the {} bytes that remain (file "
                          "size {}; truncated or corrupt?)",
                          count, min_bytes, remaining(), bytes_.size()));
    }
  }

  // `offset` is at most the file size and `alignment` at most 2^31: no overflow.
  static uint64_t align_up(uint64_t offset, uint64_t alignment) {
    return (offset + alignment - 1) / alignment * alignment;
  }

  void read_header() {
    QLLM_CHECK(bytes_.size() >= 4 && std::memcmp(bytes_.data(), "GGUF", 4) == 0,
               "{}: not a GGUF file (the first 4 bytes are not \"GGUF\"; file size {})", out_.name_,
               bytes_.size());
    pos_ = 4;
    const auto version = read<uint32_t>("version");
    if (version != 2 && version != 3) {
      if (version == 1) fail_at(4, "version", "GGUF version 1 is not supported (only versions 2 and 3)");
      if (__builtin_bswap32(version) == 2 || __builtin_bswap32(version) == 3) {
        fail_at(4, "version", "big-endian GGUF files are not supported");
      }
      fail_at(4, "version", fmt::format("unknown GGUF version {} (supported: 2 and 3)", version));
    }
    out_.version_ = version;
    tensor_count_ = read<uint64_t>("tensor count");
    metadata_count_ = read<uint64_t>("metadata count");
    // Each metadata entry takes at least a key length, a value type and a 1-byte value; each tensor info a
    // name length, n_dims, a type and an offset. Checked here so that reserve() never sees a wild count.
    check_count(metadata_count_, 8 + 4 + 1, "metadata count", 16);
    check_count(tensor_count_, 8 + 4 + 4 + 8, "tensor count", 8);
  }

  void read_metadata_entry(uint64_t index) {
    context_ = fmt::format("metadata entry {}: ", index);
    std::string key = read_string("key");
    context_ = fmt::format("metadata entry {} '{}': ", index, key);
    QLLM_CHECK(!out_.metadata_index_.contains(key), "{}: {}duplicate key (ending at byte offset {})",
               out_.name_, context_, pos_);
    const GgufValueType type = read_value_type("value type");
    GgufValue value = read_value(type, 0);
    out_.metadata_index_.emplace(key, out_.metadata_.size());
    out_.metadata_.push_back({std::move(key), std::move(value)});
    context_.clear();
  }

  GgufValueType read_value_type(std::string_view field) {
    const uint64_t id_pos = pos_;
    const auto id = read<uint32_t>(field);
    if (id >= kValueTypeNames.size()) {
      fail_at(id_pos, field, fmt::format("unknown value type {} (0-12 are defined)", id));
    }
    return static_cast<GgufValueType>(id);
  }

  template <typename T>
  static GgufValue value_of(T v) {
    GgufValue out;
    out.value.emplace<T>(std::move(v));
    return out;
  }

  GgufValue read_value(GgufValueType type, int depth) {
    switch (type) {
      case GgufValueType::U8:
        return value_of(read<uint8_t>("uint8 value"));
      case GgufValueType::I8:
        return value_of(read<int8_t>("int8 value"));
      case GgufValueType::U16:
        return value_of(read<uint16_t>("uint16 value"));
      case GgufValueType::I16:
        return value_of(read<int16_t>("int16 value"));
      case GgufValueType::U32:
        return value_of(read<uint32_t>("uint32 value"));
      case GgufValueType::I32:
        return value_of(read<int32_t>("int32 value"));
      case GgufValueType::F32:
        return value_of(read<float>("float32 value"));
      case GgufValueType::Bool:
        return value_of(read_bool());
      case GgufValueType::String:
        return value_of(read_string("string value"));
      case GgufValueType::Array:
        return value_of(read_array(depth));
      case GgufValueType::U64:
        return value_of(read<uint64_t>("uint64 value"));
      case GgufValueType::I64:
        return value_of(read<int64_t>("int64 value"));
      case GgufValueType::F64:
        return value_of(read<double>("float64 value"));
    }
    fail("{}: {}unknown value type", out_.name_, context_);
  }

  bool read_bool() {
    const auto v = read<uint8_t>("bool value");
    if (v > 1) fail_at(pos_ - 1, "bool value", fmt::format("{} is neither 0 nor 1", v));
    return v == 1;
  }

  GgufArray read_array(int depth) {
    if (depth >= kMaxGgufArrayDepth) {
      fail_at(pos_, "array", fmt::format("arrays nest deeper than {} levels", kMaxGgufArrayDepth));
    }
    const GgufValueType element_type = read_value_type("array element type");
    const uint64_t count_pos = pos_;
    const auto count = read<uint64_t>("array length");
    check_count(count, min_element_bytes(element_type), "array length", count_pos);
    GgufArray array;
    switch (element_type) {
      case GgufValueType::U8:
        array.elements = read_elements<uint8_t>(count, depth);
        break;
      case GgufValueType::I8:
        array.elements = read_elements<int8_t>(count, depth);
        break;
      case GgufValueType::U16:
        array.elements = read_elements<uint16_t>(count, depth);
        break;
      case GgufValueType::I16:
        array.elements = read_elements<int16_t>(count, depth);
        break;
      case GgufValueType::U32:
        array.elements = read_elements<uint32_t>(count, depth);
        break;
      case GgufValueType::I32:
        array.elements = read_elements<int32_t>(count, depth);
        break;
      case GgufValueType::F32:
        array.elements = read_elements<float>(count, depth);
        break;
      case GgufValueType::Bool:
        array.elements = read_elements<bool>(count, depth);
        break;
      case GgufValueType::String:
        array.elements = read_elements<std::string>(count, depth);
        break;
      case GgufValueType::Array:
        array.elements = read_elements<GgufArray>(count, depth);
        break;
      case GgufValueType::U64:
        array.elements = read_elements<uint64_t>(count, depth);
        break;
      case GgufValueType::I64:
        array.elements = read_elements<int64_t>(count, depth);
        break;
      case GgufValueType::F64:
        array.elements = read_elements<double>(count, depth);
        break;
    }
    return array;
  }

  template <typename T>
  std::vector<T> read_elements(uint64_t count, int depth) {
    std::vector<T> out;
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      // Numbers are copied in one go: the count was checked against the remaining bytes.
      out.resize(static_cast<size_t>(count));
      need(count * sizeof(T), "array elements");
      if (count > 0) std::memcpy(out.data(), bytes_.data() + pos_, count * sizeof(T));
      pos_ += count * sizeof(T);
    } else {
      out.reserve(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i) {
        if constexpr (std::is_same_v<T, bool>) {
          out.push_back(read_bool());
        } else if constexpr (std::is_same_v<T, std::string>) {
          out.push_back(read_string("array element (string)"));
        } else {
          out.push_back(read_array(depth + 1));
        }
      }
    }
    return out;
  }

  void read_alignment() {
    out_.alignment_ = kDefaultAlignment;
    if (!out_.contains(kAlignmentKey)) return;
    const uint32_t alignment = out_.get_u32(kAlignmentKey);
    QLLM_CHECK(alignment != 0 && (alignment & (alignment - 1)) == 0,
               "{}: metadata key '{}': alignment {} is not a power of two", out_.name_, kAlignmentKey,
               alignment);
    out_.alignment_ = alignment;
  }

  void read_tensor_info(uint64_t index) {
    context_ = fmt::format("tensor {}: ", index);
    GgufTensor t;
    t.name = read_string("name");
    context_ = fmt::format("tensor {} '{}': ", index, t.name);
    QLLM_CHECK(!out_.tensor_index_.contains(t.name), "{}: {}duplicate tensor name (ending at byte offset {})",
               out_.name_, context_, pos_);
    const auto n_dims = read<uint32_t>("n_dims");
    if (n_dims == 0 || n_dims > kMaxDims) {
      fail_at(pos_ - 4, "n_dims", fmt::format("{} dimensions (1 to {} are allowed)", n_dims, kMaxDims));
    }
    int64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const auto dim = read<int64_t>("dimension");
      if (dim <= 0 || __builtin_mul_overflow(elements, dim, &elements)) {
        fail_at(pos_ - 8, "dimension",
                fmt::format("dimension {} is {}: {}", d, dim,
                            dim <= 0 ? "not positive" : "the element count overflows int64"));
      }
      t.shape.push_back(dim);
    }
    const auto type_id = read<uint32_t>("type");
    const GgmlTypeInfo* type = find_ggml_type(type_id);
    if (type == nullptr) {
      fail_at(pos_ - 4, "type", fmt::format("unknown ggml type id {}", type_id));
    }
    t.type = static_cast<GgmlType>(type_id);
    QLLM_CHECK(t.shape[0] % type->block_elements == 0,
               "{}: {}shape[0] = {} is not a multiple of the {} block size {}", out_.name_, context_,
               t.shape[0], type->name, type->block_elements);
    const uint64_t blocks = static_cast<uint64_t>(elements / type->block_elements);
    QLLM_CHECK(!__builtin_mul_overflow(blocks, type->block_bytes, &t.bytes),
               "{}: {}{} blocks of {} bytes overflow uint64", out_.name_, context_, blocks,
               type->block_bytes);
    t.offset = read<uint64_t>("offset");
    out_.tensor_index_.emplace(t.name, out_.tensors_.size());
    out_.tensors_.push_back(std::move(t));
    context_.clear();
  }

  void locate_tensor_data(size_t index) {
    GgufTensor& t = out_.tensors_[index];
    QLLM_CHECK(t.offset % out_.alignment_ == 0,
               "{}: tensor {} '{}': offset {} is not a multiple of the alignment {}", out_.name_, index,
               t.name, t.offset, out_.alignment_);
    uint64_t begin = 0;
    uint64_t end = 0;
    const bool inside = !__builtin_add_overflow(out_.data_offset_, t.offset, &begin) &&
                        !__builtin_add_overflow(begin, t.bytes, &end) && end <= bytes_.size();
    QLLM_CHECK(
        inside,
        "{}: tensor {} '{}': offset {} + {} bytes runs past the end of the file (size {}; data section "
        "at byte offset {})",
        out_.name_, index, t.name, t.offset, t.bytes, bytes_.size(), out_.data_offset_);
    t.data = bytes_.data() + begin;
  }

  void check_no_overlap() const {
    std::vector<const GgufTensor*> by_offset;
    by_offset.reserve(out_.tensors_.size());
    for (const GgufTensor& t : out_.tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
      const GgufTensor& prev = *by_offset[i - 1];
      const GgufTensor& cur = *by_offset[i];
      QLLM_CHECK(cur.offset >= prev.offset + prev.bytes,
                 "{}: tensors '{}' [offset {}, {} bytes) and '{}' [offset {}, {} bytes) overlap", out_.name_,
                 prev.name, prev.offset, prev.bytes, cur.name, cur.offset, cur.bytes);
    }
  }

  std::span<const std::byte> bytes_;
  GgufFile& out_;
  uint64_t pos_ = 0;
  uint64_t tensor_count_ = 0;
  uint64_t metadata_count_ = 0;
  std::string context_;  // "metadata entry 3 'key': " or "tensor 12 'name': ", empty in the header
};

GgufFile GgufFile::open(const std::string& path) {
  GgufFile file;
  file.name_ = path;
  file.file_ = MappedFile(path);
  GgufParser(file.file_.bytes(), file).parse();
  return file;
}

GgufFile GgufFile::parse(std::span<const std::byte> bytes, std::string name) {
  GgufFile file;
  file.name_ = std::move(name);
  GgufParser(bytes, file).parse();
  return file;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
}

const GgufValue& GgufFile::get(std::string_view key) const {
  const GgufValue* value = find(key);
  QLLM_CHECK(value != nullptr, "{}: metadata key '{}' is missing", name_, key);
  return *value;
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::tensor(std::string_view name) const {
  const GgufTensor* t = find_tensor(name);
  QLLM_CHECK(t != nullptr, "{}: no tensor named '{}'", name_, name);
  return *t;
}

namespace {

[[noreturn]] void fail_type(const std::string& file, std::string_view key, std::string_view expected,
                            std::string_view found) {
  fail("{}: metadata key '{}': expected {}, found {}", file, key, expected, found);
}

// An integer of any of the 8 integer types converted to T when the value fits; nullopt when it does not.
template <typename T, typename V>
std::optional<T> fit_integer(V v) {
  if constexpr (std::is_integral_v<V> && !std::is_same_v<V, bool>) {
    if (std::in_range<T>(v)) return static_cast<T>(v);
  }
  return std::nullopt;
}

bool is_integer_type(GgufValueType t) {
  return t != GgufValueType::F32 && t != GgufValueType::F64 && t != GgufValueType::Bool &&
         t != GgufValueType::String && t != GgufValueType::Array;
}

template <typename T>
T get_integer(const GgufFile& file, std::string_view key, std::string_view type_name) {
  const GgufValue& value = file.get(key);
  if (!is_integer_type(value.type()))
    fail_type(file.name(), key, "an integer", gguf_value_type_name(value.type()));
  const auto fitted = std::visit([](const auto& v) { return fit_integer<T>(v); }, value.value);
  if (!fitted) {
    const std::string text = std::visit(
        [](const auto& v) -> std::string {
          if constexpr (std::is_integral_v<std::decay_t<decltype(v)>>) return fmt::format("{}", v);
          return "";
        },
        value.value);
    fail("{}: metadata key '{}': value {} ({}) does not fit in {}", file.name(), key, text,
         gguf_value_type_name(value.type()), type_name);
  }
  return *fitted;
}

template <typename T>
std::vector<T> get_integer_array(const GgufFile& file, std::string_view key, std::string_view type_name) {
  const GgufArray& array = file.get_array(key);
  if (!is_integer_type(array.element_type())) {
    fail_type(file.name(), key, "an array of integers",
              fmt::format("an array of {}", gguf_value_type_name(array.element_type())));
  }
  std::vector<T> out;
  out.reserve(array.size());
  std::visit(
      [&](const auto& elements) {
        using Element = typename std::decay_t<decltype(elements)>::value_type;
        if constexpr (std::is_integral_v<Element> && !std::is_same_v<Element, bool>) {
          for (size_t i = 0; i < elements.size(); ++i) {
            const std::optional<T> v = fit_integer<T>(elements[i]);
            QLLM_CHECK(v.has_value(), "{}: metadata key '{}': element {} ({}) does not fit in {}",
                       file.name(), key, i, elements[i], type_name);
            out.push_back(*v);
          }
        }
      },
      array.elements);
  return out;
}

template <typename T>
const T& get_alternative(const GgufFile& file, std::string_view key, GgufValueType expected) {
  const GgufValue& value = file.get(key);
  if (value.type() != expected) {
    fail_type(file.name(), key, gguf_value_type_name(expected), gguf_value_type_name(value.type()));
  }
  return std::get<T>(value.value);
}

template <typename T>
const std::vector<T>& get_array_of(const GgufFile& file, std::string_view key, GgufValueType expected) {
  const GgufArray& array = file.get_array(key);
  if (array.element_type() != expected) {
    fail_type(file.name(), key, fmt::format("an array of {}", gguf_value_type_name(expected)),
              fmt::format("an array of {}", gguf_value_type_name(array.element_type())));
  }
  return std::get<std::vector<T>>(array.elements);
}

}  // namespace

const std::string& GgufFile::get_string(std::string_view key) const {
  return get_alternative<std::string>(*this, key, GgufValueType::String);
}
uint32_t GgufFile::get_u32(std::string_view key) const {
  return get_integer<uint32_t>(*this, key, "uint32");
}
int32_t GgufFile::get_i32(std::string_view key) const {
  return get_integer<int32_t>(*this, key, "int32");
}
uint64_t GgufFile::get_u64(std::string_view key) const {
  return get_integer<uint64_t>(*this, key, "uint64");
}
int64_t GgufFile::get_i64(std::string_view key) const {
  return get_integer<int64_t>(*this, key, "int64");
}
bool GgufFile::get_bool(std::string_view key) const {
  return get_alternative<bool>(*this, key, GgufValueType::Bool);
}
const GgufArray& GgufFile::get_array(std::string_view key) const {
  return get_alternative<GgufArray>(*this, key, GgufValueType::Array);
}

float GgufFile::get_f32(std::string_view key) const {
  const GgufValue& value = get(key);
  if (value.type() == GgufValueType::F32) return std::get<float>(value.value);
  if (value.type() == GgufValueType::F64) return static_cast<float>(std::get<double>(value.value));
  fail_type(name_, key, "float32", gguf_value_type_name(value.type()));
}

const std::vector<std::string>& GgufFile::get_string_array(std::string_view key) const {
  return get_array_of<std::string>(*this, key, GgufValueType::String);
}
const std::vector<float>& GgufFile::get_f32_array(std::string_view key) const {
  return get_array_of<float>(*this, key, GgufValueType::F32);
}
std::vector<int32_t> GgufFile::get_i32_array(std::string_view key) const {
  return get_integer_array<int32_t>(*this, key, "int32");
}
std::vector<int64_t> GgufFile::get_i64_array(std::string_view key) const {
  return get_integer_array<int64_t>(*this, key, "int64");
}

}  // namespace qllm
