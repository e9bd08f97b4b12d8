// libFuzzer target: the GGUF reader on arbitrary bytes. A qllm::Error is the expected outcome for most
// inputs; anything else (a crash, a sanitizer report, another exception, a huge allocation) is a bug.
// For a file that parses, every typed getter runs on every key, every tensor's bytes are read
// (AddressSanitizer reports a byte outside the input), and small tensors of a supported type are dequantized.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/gguf.h"
#include "qllm/error.h"
#include "quant/ggml_blocks.h"

namespace {

constexpr int64_t kMaxDequantizedElements = 1 << 16;

template <typename Fn>
void ignore_errors(Fn&& fn) {
  try {
    fn();
  } catch (const qllm::Error&) {
  }
}

void touch_metadata(const qllm::GgufFile& file) {
  for (const qllm::GgufMetadataEntry& entry : file.metadata()) {
    const std::string& key = entry.key;
    ignore_errors([&] { file.get_string(key); });
    ignore_errors([&] { file.get_u32(key); });
    ignore_errors([&] { file.get_i32(key); });
    ignore_errors([&] { file.get_u64(key); });
    ignore_errors([&] { file.get_i64(key); });
    ignore_errors([&] { file.get_f32(key); });
    ignore_errors([&] { file.get_bool(key); });
    ignore_errors([&] { file.get_string_array(key); });
    ignore_errors([&] { file.get_f32_array(key); });
    ignore_errors([&] { file.get_i32_array(key); });
    ignore_errors([&] { file.get_i64_array(key); });
  }
}

void touch_tensors(const qllm::GgufFile& file) {
  volatile uint8_t sink = 0;
  for (const qllm::GgufTensor& t : file.tensors()) {
    for (const std::byte b : t.span()) sink = sink ^ static_cast<uint8_t>(b);
    if (qllm::can_dequantize_ggml(t.type) && t.elements() <= kMaxDequantizedElements) {
      std::vector<float> out(static_cast<size_t>(t.elements()));
      qllm::dequantize_ggml(t.type, t.span(), out);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto file = qllm::GgufFile::parse({reinterpret_cast<const std::byte*>(data), size}, "fuzz.gguf");
    touch_metadata(file);
    touch_tensors(file);
  } catch (const qllm::Error&) {
  }
  return 0;
}
