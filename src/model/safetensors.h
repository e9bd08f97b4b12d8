// Hugging Face safetensors: reader (memory-mapped, one file or shards listed in
// model.safetensors.index.json) and writer. Byte layout:
//
//   [8 bytes: header length N, little-endian u64] [N bytes: JSON header] [data section]
//
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
// the data section) and may hold "__metadata__", a map of strings. A checkpoint is untrusted input: every
// field is validated before any byte of tensor data is touched, and every failure is a qllm::Error naming
// the file and the tensor or field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"
#include "qllm/dtype.h"

namespace qllm {

// The element types qllm reads: floats for weights, integers for quantized checkpoints.
std::string_view safetensors_dtype_name(DType dtype);  // the header's spelling: "F32", "BF16", ...
std::optional<DType> parse_safetensors_dtype(std::string_view name);

// Refuse headers beyond this, as the reference implementation does: no real header comes near it, and a
// corrupted length must not make us parse (or allocate for) gigabytes.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data section, end exclusive
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // file offset of the data section: 8 + header length
};

// Parses and validates the header of a whole file image (the bytes of the file). `label` names the file
// in errors. Checks: length bound, JSON well-formed, field types, known dtype, shape x dtype size equals
// the byte range, ranges inside the data section and not overlapping.
SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file_bytes, const std::string& label);

// A tensor's bytes inside a mapped file.
struct TensorView {
  const TensorInfo* info = nullptr;
  const std::byte* data = nullptr;
  const std::string* file = nullptr;  // path of the file that holds it, for error messages

  const std::string& name() const { return info->name; }
  DType dtype() const { return info->dtype; }
  const std::vector<int64_t>& shape() const { return info->shape; }
  int64_t numel() const { return info->numel(); }
  size_t nbytes() const { return static_cast<size_t>(info->nbytes()); }
  std::span<const std::byte> bytes() const { return {data, nbytes()}; }
};

std::string shape_string(std::span<const int64_t> shape);  // "[2048, 512]"

// One mapped .safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  bool contains(const std::string& name) const { return by_name_.count(name) != 0; }
  TensorView tensor(const std::string& name) const;  // throws naming the file and the tensor when absent
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }

 private:
  MappedFile file_;
  SafetensorsHeader header_;
  std::unordered_map<std::string, size_t> by_name_;
};

// A checkpoint directory's weights: model.safetensors.index.json with its shards when present, else
// model.safetensors. A path to a single .safetensors file is accepted too.
class SafetensorsCheckpoint {
 public:
  static SafetensorsCheckpoint open(const std::string& path);

  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  TensorView tensor(const std::string& name) const;      // throws naming the checkpoint and the tensor
  std::vector<std::string> names() const;                // sorted
  const std::string& source() const { return source_; }  // the index or the single file
  size_t num_files() const { return files_.size(); }

 private:
  std::string source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
};

// A tensor to write: either its bytes (`data`), or `fill`, called with a zeroed buffer of the tensor's
// size just before it is written, so that a large checkpoint never has to be in memory at once.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;
  std::function<void(std::span<std::byte>)> fill;
};

// Writes one file as Hugging Face does: the header padded with spaces to a multiple of 8 bytes, tensors
// stored largest element size first, then by name (so each starts aligned to its element size); `fill`
// callbacks run in that order.
void write_safetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Writes model-0000i-of-0000n.safetensors shards (a new shard starts when the next tensor would take the
// current one past `max_shard_bytes`) and model.safetensors.index.json into `dir`.
void write_sharded_safetensors(const std::string& dir, std::span<const TensorToWrite> tensors,
                               uint64_t max_shard_bytes,
                               const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace qllm
