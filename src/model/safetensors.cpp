#include "model/safetensors.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "core/file_io.h"
#include "core/json.h"
#include "qllm/error.h"

namespace qllm {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {

using json = nlohmann::json;

// A valid header nests three levels deep.
constexpr int kMaxJsonDepth = 16;

uint64_t read_u64_le(const std::byte* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

uint64_t checked_offset(const json& v, const std::string& label, const std::string& name) {
  QLLM_CHECK(v.is_number_unsigned(), "{}: tensor '{}': data_offsets must hold non-negative integers, got {}",
             label, name, json_excerpt(v));
  return v.get<uint64_t>();
}

TensorInfo parse_tensor_entry(const std::string& name, const json& entry, const std::string& label) {
  QLLM_CHECK(!name.empty(), "{}: header has a tensor with an empty name", label);
  QLLM_CHECK(entry.is_object(), "{}: tensor '{}': entry must be an object, got {}", label, name,
             entry.type_name());
  for (const auto& [key, value] : entry.items()) {
    QLLM_CHECK(key == "dtype" || key == "shape" || key == "data_offsets",
               "{}: tensor '{}': unknown field '{}'", label, name, key);
  }
  QLLM_CHECK(entry.contains("dtype") && entry["dtype"].is_string(),
             "{}: tensor '{}': missing string field 'dtype'", label, name);
  QLLM_CHECK(entry.contains("shape") && entry["shape"].is_array(),
             "{}: tensor '{}': missing array field 'shape'", label, name);
  QLLM_CHECK(
      entry.contains("data_offsets") && entry["data_offsets"].is_array() && entry["data_offsets"].size() == 2,
      "{}: tensor '{}': 'data_offsets' must be an array [begin, end]", label, name);

  TensorInfo info;
  info.name = name;
  const std::string dtype = entry["dtype"].get<std::string>();
  const auto parsed = parse_safetensors_dtype(dtype);
  QLLM_CHECK(parsed.has_value(),
             "{}: tensor '{}': unsupported dtype '{}' (supported: F32, F16, BF16, I8, U8, I32)", label, name,
             dtype);
  info.dtype = *parsed;

  // numel x element size, with every product checked for overflow.
  uint64_t bytes = dtype_size(info.dtype);
  for (const json& dim : entry["shape"]) {
    QLLM_CHECK(dim.is_number_unsigned(), "{}: tensor '{}': shape must hold non-negative integers, got {}",
               label, name, json_excerpt(entry["shape"]));
    const uint64_t d = dim.get<uint64_t>();
    QLLM_CHECK(d <= static_cast<uint64_t>(INT64_MAX) && !__builtin_mul_overflow(bytes, d, &bytes),
               "{}: tensor '{}': shape {} overflows", label, name, json_excerpt(entry["shape"]));
    info.shape.push_back(static_cast<int64_t>(d));
  }
  info.begin = checked_offset(entry["data_offsets"][0], label, name);
  info.end = checked_offset(entry["data_offsets"][1], label, name);
  QLLM_CHECK(info.begin <= info.end, "{}: tensor '{}': data_offsets [{}, {}] run backwards", label, name,
             info.begin, info.end);
  QLLM_CHECK(info.end - info.begin == bytes,
             "{}: tensor '{}': shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {}", label, name,
             shape_string(info.shape), dtype, bytes, info.begin, info.end, info.end - info.begin);
  return info;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& label) {
  QLLM_CHECK(value.is_object(), "{}: '__metadata__' must be an object of strings, got {}", label,
             value.type_name());
  std::map<std::string, std::string> metadata;
  for (const auto& [key, v] : value.items()) {
    QLLM_CHECK(v.is_string(), "{}: '__metadata__' field '{}' must be a string, got {}", label, key,
               v.type_name());
    metadata[key] = v.get<std::string>();
  }
  return metadata;
}

// Ranges must lie inside the data section and, as the format's reference implementation requires, tile it
// exactly: no overlap, no gap, no trailing bytes (empty tensors occupy none). A gap or a tail is how a
// spliced or truncated-and-padded file shows.
void check_ranges(const std::vector<TensorInfo>& tensors, uint64_t data_size, const std::string& label) {
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : tensors) {
    QLLM_CHECK(
        t.end <= data_size,
        "{}: tensor '{}': data_offsets [{}, {}] reach past the data section ({} bytes; file truncated?)",
        label, t.name, t.begin, t.end, data_size);
    if (t.nbytes() > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  uint64_t covered = 0;  // bytes [0, covered) belong to the tensors seen so far
  for (size_t i = 0; i < by_offset.size(); ++i) {
    const TensorInfo& cur = *by_offset[i];
    if (i > 0) {
      const TensorInfo& prev = *by_offset[i - 1];
      QLLM_CHECK(cur.begin >= prev.end, "{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", label,
                 prev.name, prev.begin, prev.end, cur.name, cur.begin, cur.end);
    }
    QLLM_CHECK(cur.begin == covered, "{}: {} unused bytes before tensor '{}' at data offset {}", label,
               cur.begin - covered, cur.name, covered);
    covered = cur.end;
  }
  QLLM_CHECK(covered == data_size, "{}: {} bytes after the last tensor are not part of any tensor", label,
             data_size - covered);
}

uint64_t tensor_bytes(const TensorToWrite& t) {
  uint64_t bytes = dtype_size(t.dtype);
  for (int64_t d : t.shape) {
    QLLM_CHECK(d >= 0, "write_safetensors: tensor '{}' has a negative dimension in {}", t.name,
               shape_string(t.shape));
    bytes *= static_cast<uint64_t>(d);
  }
  return bytes;
}

}  // namespace

std::string_view safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::I8:
      return "I8";
    case DType::U8:
      return "U8";
    case DType::I32:
      return "I32";
  }
  return "?";
}

std::optional<DType> parse_safetensors_dtype(std::string_view name) {
  for (DType d : {DType::F32, DType::F16, DType::BF16, DType::I8,
                        DType::U8, DType::I32}) {
    if (name == safetensors_dtype_name(d)) return d;
  }
  return std::nullopt;
}

int64_t TensorInfo::numel() const {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
}

std::string shape_string(std::span<const int64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file_bytes, const std::string& label) {
  QLLM_CHECK(file_bytes.size() >= 8,
             "{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", label,
             file_bytes.size());
  const uint64_t header_len = read_u64_le(file_bytes.data());
  QLLM_CHECK(header_len <= kMaxSafetensorsHeaderBytes,
             "{}: header length {} exceeds the {} byte limit (corrupted?)", label, header_len,
             kMaxSafetensorsHeaderBytes);
  QLLM_CHECK(header_len <= file_bytes.size() - 8,
             "{}: header length {} reaches past the end of the file ({} bytes)", label, header_len,
             file_bytes.size());
  QLLM_CHECK(header_len >= 2, "{}: header length {} is too short for a JSON object", label, header_len);

  const std::string_view text(reinterpret_cast<const char*>(file_bytes.data() + 8), header_len);
  // Duplicate tensor names are refused: two entries for one name mean a corrupt or crafted file.
  const json root = parse_json(text, fmt::format("{}: header", label), {.max_depth = kMaxJsonDepth});
  QLLM_CHECK(root.is_object(), "{}: header must be a JSON object, got {}", label, root.type_name());

  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      header.metadata = parse_metadata(entry, label);
    } else {
      header.tensors.push_back(parse_tensor_entry(name, entry, label));
    }
  }
  check_ranges(header.tensors, file_bytes.size() - header.data_offset, label);
  return header;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  header_ = parse_safetensors_header(file_.bytes(), path);
  for (size_t i = 0; i < header_.tensors.size(); ++i) by_name_[header_.tensors[i].name] = i;
}

TensorView SafetensorsFile::tensor(const std::string& name) const {
  const auto it = by_name_.find(name);
  QLLM_CHECK(it != by_name_.end(), "{}: no tensor named '{}'", path(), name);
  const TensorInfo& info = header_.tensors[it->second];
  return TensorView{&info, file_.data() + header_.data_offset + info.begin, &file_.path()};
}

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& path) {
  namespace fs = std::filesystem;
  SafetensorsCheckpoint ckpt;
  if (!fs::is_directory(path)) {
    QLLM_CHECK(fs::exists(path), "'{}' does not exist", path);
    ckpt.source_ = path;
    ckpt.files_.push_back(std::make_unique<SafetensorsFile>(path));
    for (const TensorInfo& t : ckpt.files_.back()->tensors()) ckpt.where_[t.name] = ckpt.files_.back().get();
    return ckpt;
  }
  const fs::path dir(path);
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (!fs::exists(index_path)) {
    const fs::path single = dir / "model.safetensors";
    QLLM_CHECK(fs::exists(single), "{}: no model.safetensors or model.safetensors.index.json", path);
    return open(single.string());
  }

  ckpt.source_ = index_path.string();
  const std::string label = ckpt.source_;
  json index = read_json_file(index_path);
  QLLM_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
             "{}: missing object field 'weight_map'", label);
  std::map<std::string, const SafetensorsFile*> shard_by_name;
  for (const auto& [tensor, shard] : index["weight_map"].items()) {
    QLLM_CHECK(shard.is_string(), "{}: weight_map['{}'] must be a file name, got {}", label, tensor,
               json_excerpt(shard));
    const std::string shard_name = shard.get<std::string>();
    // Shards live beside the index: a name with a directory part could point anywhere.
    QLLM_CHECK(!shard_name.empty() && fs::path(shard_name).filename() == shard_name && shard_name != ".." &&
                   shard_name != ".",
               "{}: weight_map['{}'] names '{}', which is not a plain file name", label, tensor, shard_name);
    auto found = shard_by_name.find(shard_name);
    if (found == shard_by_name.end()) {
      const fs::path shard_path = dir / shard_name;
      QLLM_CHECK(fs::exists(shard_path), "{}: weight_map['{}'] names shard '{}', which does not exist", label,
                 tensor, shard_path.string());
      ckpt.files_.push_back(std::make_unique<SafetensorsFile>(shard_path.string()));
      found = shard_by_name.emplace(shard_name, ckpt.files_.back().get()).first;
    }
    QLLM_CHECK(found->second->contains(tensor),
               "{}: weight_map says tensor '{}' is in '{}', but that file lacks it", label, tensor,
               found->second->path());
    ckpt.where_[tensor] = found->second;
  }
  QLLM_CHECK(!ckpt.where_.empty(), "{}: weight_map is empty", label);
  return ckpt;
}

TensorView SafetensorsCheckpoint::tensor(const std::string& name) const {
  const auto it = where_.find(name);
  QLLM_CHECK(it != where_.end(), "{}: missing tensor '{}'", source_, name);
  return it->second->tensor(name);
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : where_) out.push_back(name);
  return out;
}

void write_safetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Hugging Face's order: larger elements first, then by name, so that every tensor starts aligned to its
  // element size (the data section itself starts 8-byte aligned).
  std::vector<const TensorToWrite*> order;
  for (const TensorToWrite& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    const size_t sa = dtype_size(a->dtype);
    const size_t sb = dtype_size(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });

  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorToWrite* t : order) {
    QLLM_CHECK(!t->name.empty() && t->name != "__metadata__", "write_safetensors: bad tensor name '{}'",
               t->name);
    QLLM_CHECK(!header.contains(t->name), "write_safetensors: tensor '{}' given twice", t->name);
    const uint64_t bytes = tensor_bytes(*t);
    QLLM_CHECK(t->fill || t->data.size() == bytes,
               "write_safetensors: tensor '{}' {} {} needs {} bytes, got {}", t->name,
               safetensors_dtype_name(t->dtype), shape_string(t->shape), bytes, t->data.size());
    header[t->name] = {{"dtype", safetensors_dtype_name(t->dtype)},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  QLLM_CHECK(out.good(), "cannot create '{}'", path);
  const uint64_t header_len = text.size();
  out.write(reinterpret_cast<const char*>(&header_len), sizeof header_len);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  std::vector<std::byte> buffer;
  for (const TensorToWrite* t : order) {
    std::span<const std::byte> bytes = t->data;
    if (t->fill) {
      buffer.assign(tensor_bytes(*t), std::byte{0});
      t->fill(buffer);
      bytes = buffer;
    }
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  out.close();
  QLLM_CHECK(out.good(), "error while writing '{}' (disk full?)", path);
}

void write_sharded_safetensors(const std::string& dir, std::span<const TensorToWrite> tensors,
                               uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata) {
  std::vector<std::vector<TensorToWrite>> shards(1);
  uint64_t shard_bytes = 0;
  uint64_t total_bytes = 0;
  for (const TensorToWrite& t : tensors) {
    const uint64_t bytes = tensor_bytes(t);
    if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(t);
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
    write_safetensors((std::filesystem::path(dir) / name).string(), shards[i], metadata);
    for (const TensorToWrite& t : shards[i]) weight_map[t.name] = name;
  }
  const json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  const std::string index_path = (std::filesystem::path(dir) / "model.safetensors.index.json").string();
  std::ofstream out(index_path);
  QLLM_CHECK(out.good(), "cannot create '{}'", index_path);
  out << index.dump(2) << "\n";
  QLLM_CHECK(out.good(), "error while writing '{}'", index_path);
}

}  // namespace qllm
