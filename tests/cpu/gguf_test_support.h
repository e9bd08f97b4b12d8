// A small GGUF writer for tests: builds a file image byte by byte (metadata of any value type, tensor
// infos, aligned data), including malformed ones (raw value bytes, forced offsets and counts).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/gguf.h"

namespace qllm::testing {

// Little-endian bytes appended one field at a time.
class ByteWriter {
 public:
  template <typename T>
  ByteWriter& put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
    return *this;
  }
  ByteWriter& put_string(std::string_view s) {
    put<uint64_t>(s.size());
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    bytes_.insert(bytes_.end(), p, p + s.size());
    return *this;
  }
  ByteWriter& put_bytes(std::span<const std::byte> b) {
    bytes_.insert(bytes_.end(), b.begin(), b.end());
    return *this;
  }
  const std::vector<std::byte>& bytes() const { return bytes_; }
  std::vector<std::byte>& bytes() { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

template <typename T>
constexpr GgufValueType gguf_type_of() {
  if constexpr (std::is_same_v<T, uint8_t>) return GgufValueType::U8;
  if constexpr (std::is_same_v<T, int8_t>) return GgufValueType::I8;
  if constexpr (std::is_same_v<T, uint16_t>) return GgufValueType::U16;
  if constexpr (std::is_same_v<T, int16_t>) return GgufValueType::I16;
  if constexpr (std::is_same_v<T, uint32_t>) return GgufValueType::U32;
  if constexpr (std::is_same_v<T, int32_t>) return GgufValueType::I32;
  if constexpr (std::is_same_v<T, float>) return GgufValueType::F32;
  if constexpr (std::is_same_v<T, bool>) return GgufValueType::Bool;
  if constexpr (std::is_same_v<T, uint64_t>) return GgufValueType::U64;
  if constexpr (std::is_same_v<T, int64_t>) return GgufValueType::I64;
  if constexpr (std::is_same_v<T, double>) return GgufValueType::F64;
}

struct GgufTestTensor {
  std::string name;
  std::vector<int64_t> shape;
  GgmlType type = GgmlType::F32;
  std::vector<std::byte> data;
  std::optional<uint64_t> offset;  // when set, written instead of the computed (aligned) offset
};

// Builds a GGUF file image: header, metadata entries, tensor infos, padding to `alignment`, tensor data
// (each tensor at the next aligned offset; no padding after the last one, so that every proper prefix of
// the image is truncated somewhere that matters).
class GgufBuilder {
 public:
  uint32_t version = 3;
  uint64_t alignment = 32;               // used for the layout; add "general.alignment" yourself
  std::optional<uint64_t> tensor_count;  // forced header counts, for malformed files
  std::optional<uint64_t> metadata_count;

  template <typename T>
  GgufBuilder& kv(std::string_view key, T value) {
    begin_entry(key, gguf_type_of<T>()).put(value);
    return *this;
  }
  GgufBuilder& kv_string(std::string_view key, std::string_view value) {
    begin_entry(key, GgufValueType::String).put_string(value);
    return *this;
  }
  template <typename T>
  GgufBuilder& kv_array(std::string_view key, const std::vector<T>& values) {
    ByteWriter& w = begin_entry(key, GgufValueType::Array);
    w.put(static_cast<uint32_t>(gguf_type_of<T>())).put<uint64_t>(values.size());
    for (const T& v : values) w.put(v);
    return *this;
  }
  GgufBuilder& kv_string_array(std::string_view key, const std::vector<std::string>& values) {
    ByteWriter& w = begin_entry(key, GgufValueType::Array);
    w.put(static_cast<uint32_t>(GgufValueType::String)).put<uint64_t>(values.size());
    for (const std::string& v : values) w.put_string(v);
    return *this;
  }
  // A value given as its type id and raw payload bytes (which may be malformed).
  GgufBuilder& kv_raw(std::string_view key, uint32_t type_id, const ByteWriter& payload) {
    metadata_.put_string(key).put(type_id).put_bytes(payload.bytes());
    ++entries_;
    return *this;
  }

  GgufBuilder& tensor(GgufTestTensor t) {
    tensors_.push_back(std::move(t));
    return *this;
  }

  std::vector<std::byte> build() const {
    ByteWriter w;
    w.put_bytes(std::as_bytes(std::span("GGUF", 4)));
    w.put(version);
    w.put<uint64_t>(tensor_count.value_or(tensors_.size()));
    w.put<uint64_t>(metadata_count.value_or(entries_));
    w.put_bytes(metadata_.bytes());
    std::vector<uint64_t> offsets;
    uint64_t next = 0;
    for (const GgufTestTensor& t : tensors_) {
      offsets.push_back(t.offset.value_or(next));
      next = align(offsets.back() + t.data.size());
      w.put_string(t.name).put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
      for (const int64_t d : t.shape) w.put(d);
      w.put(static_cast<uint32_t>(t.type)).put(offsets.back());
    }
    const uint64_t data_start = align(w.bytes().size());
    w.bytes().resize(data_start);
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const auto& data = tensors_[i].data;
      if (w.bytes().size() < data_start + offsets[i] + data.size()) {
        w.bytes().resize(data_start + offsets[i] + data.size());
      }
      if (!data.empty()) std::memcpy(w.bytes().data() + data_start + offsets[i], data.data(), data.size());
    }
    return w.bytes();
  }

 private:
  ByteWriter& begin_entry(std::string_view key, GgufValueType type) {
    metadata_.put_string(key).put(static_cast<uint32_t>(type));
    ++entries_;
    return metadata_;
  }
  uint64_t align(uint64_t n) const { return (n + alignment - 1) / alignment * alignment; }

  ByteWriter metadata_;
  uint64_t entries_ = 0;
  std::vector<GgufTestTensor> tensors_;
};

}  // namespace qllm::testing
