// GGUF container reader (versions 2 and 3, little-endian), the file format of llama.cpp / ggml. Format-level
// only: metadata and tensor descriptions, no model semantics, so that the tokenizer and the model loader
// both read files through it. Hand-written: no Debian package provides a GGUF reader for C++ (ggml's own
// reader is part of ggml and logs to stderr instead of reporting errors).
//
// Layout (all integers little-endian; a string is a u64 byte length followed by that many bytes):
//
//   "GGUF"  u32 version  u64 tensor_count  u64 metadata_count
//   metadata_count x { string key, u32 value_type, value }      value types: GgufValueType below; an array
//                                                               is { u32 element_type, u64 count, elements }
//   tensor_count x { string name, u32 n_dims, n_dims x i64 dim, u32 ggml_type, u64 offset }
//   padding to `alignment` (metadata "general.alignment", default 32), then the data section; a tensor's
//   offset is relative to the data section's start and a multiple of `alignment`.
//
// A file is untrusted input: every count, length, offset and size is checked against the bytes that remain
// before it is used, so that a truncated or malformed file is a qllm::Error naming the file, the field and
// the byte offset, never a crash, a read outside the file or an allocation beyond a small multiple of the
// file size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/mapped_file.h"

namespace qllm {

// ggml's tensor element types, with ggml's numeric ids (ids 4, 5, 31-33 and 36-38 were removed from ggml).
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
};

// A type's storage: elements are stored in blocks of `block_elements` taking `block_bytes` each.
struct GgmlTypeInfo {
  std::string_view name;  // ggml's spelling: "f32", "q4_0", "q4_K", "bf16", ...
  int64_t block_elements = 0;
  uint64_t block_bytes = 0;
};

const GgmlTypeInfo* find_ggml_type(uint32_t id);  // nullptr for an id that is no ggml type
const GgmlTypeInfo& ggml_type_info(GgmlType type);
std::string_view ggml_type_name(GgmlType type);

// The 13 metadata value types, with GGUF's numeric ids.
enum class GgufValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

std::string_view gguf_value_type_name(GgufValueType type);  // "uint8", ..., "string", "array", "float64"

// Arrays nest (an array of arrays) at most this deep; deeper nesting is refused as malformed.
inline constexpr int kMaxGgufArrayDepth = 4;

// An array: one vector of the element type (the alternative's index is the element type's id), so that
// a large array of numbers takes no more memory than its bytes in the file.
struct GgufArray {
  std::variant<std::vector<uint8_t>, std::vector<int8_t>, std::vector<uint16_t>, std::vector<int16_t>,
               std::vector<uint32_t>, std::vector<int32_t>, std::vector<float>, std::vector<bool>,
               std::vector<std::string>, std::vector<GgufArray>, std::vector<uint64_t>, std::vector<int64_t>,
               std::vector<double>>
      elements;

  GgufValueType element_type() const { return static_cast<GgufValueType>(elements.index()); }
  size_t size() const;
};

// One metadata value (the alternative's index is the value type's id).
struct GgufValue {
  std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool, std::string, GgufArray,
               uint64_t, int64_t, double>
      value;

  GgufValueType type() const { return static_cast<GgufValueType>(value.index()); }
};

struct GgufMetadataEntry {
  std::string key;
  GgufValue value;
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the innermost, contiguous dimension (a row)
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;  // relative to the data section, as stored in the file
  uint64_t bytes = 0;
  const std::byte* data = nullptr;  // inside the file's bytes; [data, data + bytes) was checked

  int64_t elements() const;
  std::span<const std::byte> span() const { return {data, static_cast<size_t>(bytes)}; }
};

class GgufFile {
 public:
  // Maps `path` and parses it; tensors' data point into the mapping, which the GgufFile owns.
  static GgufFile open(const std::string& path);
  // Parses a file image held by the caller (tests, fuzzing); tensors' data point into `bytes`, which must
  // outlive the GgufFile. `name` names the file in error messages.
  static GgufFile parse(std::span<const std::byte> bytes, std::string name);

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // file offset of the data section

  // Metadata in file order, and lookup by key (nullptr when absent).
  const std::vector<GgufMetadataEntry>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters: each throws qllm::Error naming the file and the key when the key is absent or its value
  // has another type ("expected uint32, found string"). The integer getters accept a value of any integer
  // type that fits the requested one; get_f32 accepts float32 and float64 (rounded to float).
  const GgufValue& get(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  uint32_t get_u32(std::string_view key) const;
  int32_t get_i32(std::string_view key) const;
  uint64_t get_u64(std::string_view key) const;
  int64_t get_i64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const GgufArray& get_array(std::string_view key) const;
  const std::vector<std::string>& get_string_array(std::string_view key) const;
  const std::vector<float>& get_f32_array(std::string_view key) const;  // float32 elements only
  std::vector<int32_t> get_i32_array(std::string_view key) const;       // any integer elements that fit
  std::vector<int64_t> get_i64_array(std::string_view key) const;

  // Tensors in file order; lookup by name (find_tensor: nullptr when absent; tensor: throws naming it).
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(std::string_view name) const;
  const GgufTensor& tensor(std::string_view name) const;

 private:
  friend class GgufParser;
  GgufFile() = default;

  std::string name_;
  MappedFile file_;  // empty for parse()
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufMetadataEntry> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Writes `file`'s metadata (every key, in file order) as a GGUF v3 file without tensors: a GGUF model's
// tokenizer and chat template kept beside a checkpoint converted from it (src/core/gguf_write.cpp).
void write_gguf_metadata(const std::string& path, const GgufFile& file);

}  // namespace qllm
