#include "core/utf8.h"

#include "qllm/error.h"

namespace qllm::utf8 {

namespace {

// What starts at some position: a whole valid sequence (`complete`), or only its first `length` bytes
// (the "maximal subpart" of Unicode §3.9; length 0 when the first byte can start no sequence).
struct Scan {
  size_t length = 0;
  bool complete = false;
};

size_t expected_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;  // continuation bytes, C0/C1 (always overlong) and F5..FF
}

// The second byte's range depends on the lead (Unicode Table 3-7): this excludes overlong forms,
// surrogates (ED A0..BF) and code points past U+10FFFF.
bool second_byte_ok(uint8_t lead, uint8_t byte) {
  switch (lead) {
    case 0xE0:
      return byte >= 0xA0 && byte <= 0xBF;
    case 0xED:
      return byte >= 0x80 && byte <= 0x9F;
    case 0xF0:
      return byte >= 0x90 && byte <= 0xBF;
    case 0xF4:
      return byte >= 0x80 && byte <= 0x8F;
    default:
      return byte >= 0x80 && byte <= 0xBF;
  }
}

Scan scan(std::string_view text, size_t pos) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  const size_t need = expected_length(lead);
  if (need == 0) return {};
  size_t length = 1;
  while (length < need && pos + length < text.size()) {
    const auto byte = static_cast<uint8_t>(text[pos + length]);
    const bool ok = length == 1 ? second_byte_ok(lead, byte) : (byte >= 0x80 && byte <= 0xBF);
    if (!ok) break;
    ++length;
  }
  return {length, length == need};
}

}  // namespace

std::optional<size_t> first_invalid_byte(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {  // ASCII fast path
      ++pos;
      continue;
    }
    const Scan s = scan(text, pos);
    if (!s.complete) return pos;
    pos += s.length;
  }
  return std::nullopt;
}

void check_valid(std::string_view text, std::string_view what) {
  if (const auto bad = first_invalid_byte(text)) {
    fail("{}: invalid UTF-8 at byte offset {} (byte 0x{:02X})", what, *bad, static_cast<uint8_t>(text[*bad]));
  }
}

std::string to_valid_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    const Scan s = scan(bytes, pos);
    if (s.complete) {
      out.append(bytes.substr(pos, s.length));
      pos += s.length;
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD for the maximal subpart (at least one byte)
      pos += s.length == 0 ? 1 : s.length;
    }
  }
  return out;
}

size_t incomplete_suffix_length(std::string_view bytes) {
  // A sequence is at most 4 bytes, so only the last 3 positions can start an incomplete one.
  const size_t first = bytes.size() > 3 ? bytes.size() - 3 : 0;
  for (size_t pos = first; pos < bytes.size(); ++pos) {
    const Scan s = scan(bytes, pos);
    if (!s.complete && s.length > 0 && pos + s.length == bytes.size()) return bytes.size() - pos;
  }
  return 0;
}

void append_code_point(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

uint32_t next_code_point(std::string_view text, size_t& pos) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  const size_t length = expected_length(lead);
  QLLM_CHECK(length > 0 && pos + length <= text.size(), "invalid UTF-8 at byte offset {}", pos);
  uint32_t cp = length == 1 ? lead : (lead & (0xFF >> (length + 1)));
  for (size_t i = 1; i < length; ++i) cp = (cp << 6) | (static_cast<uint8_t>(text[pos + i]) & 0x3F);
  pos += length;
  return cp;
}

bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

bool is_python_space(uint32_t cp) {
  // Python adds the ASCII information separators (bidirectional class B or S) to White_Space.
  return is_white_space(cp) || (cp >= 0x1C && cp <= 0x1F);
}

}  // namespace qllm::utf8
