// libFuzzer target: the safetensors header parser on arbitrary bytes (a whole file image). A qllm::Error is
// the expected outcome for most inputs; anything else is a bug. For a header that parses, every tensor's
// bytes are read (AddressSanitizer reports a byte outside the input).
#include <cstddef>
#include <cstdint>
#include <span>

#include "model/safetensors.h"
#include "qllm/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const qllm::SafetensorsHeader header = qllm::parse_safetensors_header(bytes, "fuzz.safetensors");
    volatile uint8_t sink = 0;
    for (const qllm::TensorInfo& t : header.tensors) {
      for (const std::byte b : bytes.subspan(header.data_offset + t.begin, t.nbytes())) {
        sink = sink ^ static_cast<uint8_t>(b);
      }
      (void)t.numel();
    }
  } catch (const qllm::Error&) {
  }
  return 0;
}
