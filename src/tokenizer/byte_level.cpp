#include "tokenizer/byte_level.h"

#include "core/utf8.h"

namespace qllm::byte_level {

namespace {

bool stands_for_itself(uint32_t byte) {
  return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
}

struct Tables {
  std::array<uint32_t, 256> stand_in{};
  std::array<int16_t, 512> byte_of{};  // every stand-in is below U+0144; -1 where none

  Tables() {
    byte_of.fill(-1);
    uint32_t next_extra = 0x100;
    for (uint32_t b = 0; b < 256; ++b) {
      stand_in[b] = stands_for_itself(b) ? b : next_extra++;
      byte_of[stand_in[b]] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

uint32_t stand_in(uint8_t byte) {
  return tables().stand_in[byte];
}

std::optional<uint8_t> byte_of(uint32_t code_point) {
  if (code_point >= tables().byte_of.size() || tables().byte_of[code_point] < 0) return std::nullopt;
  return static_cast<uint8_t>(tables().byte_of[code_point]);
}

std::optional<std::string> bytes_of(std::string_view vocab_string) {
  std::string bytes;
  bytes.reserve(vocab_string.size());
  size_t pos = 0;
  while (pos < vocab_string.size()) {
    const auto byte = byte_of(utf8::next_code_point(vocab_string, pos));
    if (!byte) return std::nullopt;
    bytes += static_cast<char>(*byte);
  }
  return bytes;
}

std::string decode_token(std::string_view vocab_string) {
  return bytes_of(vocab_string).value_or(std::string(vocab_string));
}

}  // namespace qllm::byte_level
