// A read-only memory-mapped file: checkpoints are mapped, not read, so that a 2.5 GB model costs page
// cache instead of a heap copy, and tensors are views into the mapping. Move-only; unmaps on destruction.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace qllm {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps the whole file; throws qllm::Error naming the path when it cannot be opened, stat'ed or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  void unmap();

  std::string path_;
  const std::byte* data_ = nullptr;  // nullptr for an empty file (mmap rejects length 0)
  size_t size_ = 0;
};

}  // namespace qllm
