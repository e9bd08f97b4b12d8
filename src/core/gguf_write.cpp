// A metadata-only GGUF file (no tensors): what `qllm quantize` keeps of a GGUF input's tokenizer and chat
// template, readable again by GgufFile (core/gguf.h has the layout).
#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <type_traits>

#include "core/gguf.h"
#include "qllm/error.h"

namespace qllm {

namespace {

class Writer {
 public:
  template <typename T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const char*>(&v);
    bytes_.append(p, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes_.append(s);
  }
  void put_array(const GgufArray& a) {
    put<uint32_t>(static_cast<uint32_t>(a.element_type()));
    std::visit(
        [&](const auto& elements) {
          put<uint64_t>(elements.size());
          for (const auto& e : elements) put_scalar(e);
        },
        a.elements);
  }
  template <typename T>
  void put_scalar(const T& v) {
    if constexpr (std::is_same_v<T, std::string>) {
      put_string(v);
    } else if constexpr (std::is_same_v<T, GgufArray>) {
      put_array(v);
    } else if constexpr (std::is_same_v<T, bool>) {
      put<uint8_t>(v ? 1 : 0);
    } else {
      put<T>(v);
    }
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

}  // namespace

void write_gguf_metadata(const std::string& path, const GgufFile& file) {
  Writer w;
  w.put<uint32_t>(0x46554747u);  // "GGUF"
  w.put<uint32_t>(3);
  w.put<uint64_t>(0);  // tensors
  w.put<uint64_t>(file.metadata().size());
  for (const GgufMetadataEntry& e : file.metadata()) {
    w.put_string(e.key);
    w.put<uint32_t>(static_cast<uint32_t>(e.value.type()));
    std::visit([&](const auto& v) { w.put_scalar(v); }, e.value.value);
  }
  // The (empty) data section starts aligned, as readers compute its offset.
  while (w.bytes().size() % file.alignment() != 0) w.put<uint8_t>(0);
  std::ofstream out(path, std::ios::binary);
  out.write(w.bytes().data(), static_cast<std::streamsize>(w.bytes().size()));
  QLLM_CHECK(out.good(), "cannot write '{}'", path);
}

}  // namespace qllm
