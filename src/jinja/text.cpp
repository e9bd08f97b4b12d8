// Python str operations on valid UTF-8 (see text.h).
#include "jinja/text.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/utf8.h"
#include "qllm/error.h"

namespace qllm::jinja::text {

namespace {

std::vector<uint32_t> decode(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) out.push_back(utf8::next_code_point(s, pos));
  return out;
}

std::string encode(uint32_t cp) {
  std::string out;
  utf8::append_code_point(out, cp);
  return out;
}

enum class Case { Lower, Upper, None };

// Scripts and symbol blocks without case: their code points map to themselves.
bool caseless(uint32_t cp) {
  struct Range {
    uint32_t first, last;
  };
  static constexpr Range kRanges[] = {
      {0x00A0, 0x00A9},   {0x00AB, 0x00B4},   {0x00B6, 0x00B9},   {0x00BB, 0x00BF}, {0x00D7, 0x00D7},
      {0x00F7, 0x00F7},   {0x0300, 0x0344},   {0x0346, 0x036F},   {0x0590, 0x05FF}, {0x0600, 0x06FF},
      {0x0900, 0x0DFF},   {0x0E00, 0x0E7F},   {0x2000, 0x206F},   {0x20A0, 0x20CF}, {0x2190, 0x23FF},
      {0x2500, 0x27BF},   {0x2800, 0x2BFF},   {0x3000, 0x312F},   {0x3130, 0x318F}, {0x31F0, 0x31FF},
      {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},   {0xAC00, 0xD7AF},   {0xF900, 0xFAFF}, {0xFE00, 0xFE0F},
      {0xFE30, 0xFE4F},   {0xFF00, 0xFF20},   {0xFF3B, 0xFF40},   {0xFF5B, 0xFFEF}, {0x1F1E6, 0x1F1FF},
      {0x1F200, 0x1FAFF}, {0x20000, 0x3FFFF}, {0xE0000, 0xE007F},
  };
  for (const Range& r : kRanges) {
    if (cp >= r.first && cp <= r.last) return true;
  }
  return false;
}

// Latin-1 letters: À-Þ and à-þ (but × and ÷) are case pairs 0x20 apart.
bool latin1_upper(uint32_t cp) {
  return cp >= 0xC0 && cp <= 0xDE && cp != 0xD7;
}
bool latin1_lower(uint32_t cp) {
  return cp >= 0xE0 && cp <= 0xFE && cp != 0xF7;
}

Case case_of(uint32_t cp) {
  if (cp < 0x80) {
    if (cp >= 'a' && cp <= 'z') return Case::Lower;
    if (cp >= 'A' && cp <= 'Z') return Case::Upper;
    return Case::None;
  }
  if (latin1_upper(cp)) return Case::Upper;
  if (latin1_lower(cp) || cp == 0xDF) return Case::Lower;
  if (caseless(cp)) return Case::None;
  fail("case mapping of the character U+{:04X} is not supported (qllm maps ASCII and Latin-1 letters)", cp);
}

std::string to_upper(uint32_t cp) {
  if (cp == 0xDF) return "SS";  // ß
  if (case_of(cp) != Case::Lower) return encode(cp);
  return encode(cp - 0x20);
}

std::string to_title(uint32_t cp) {
  return cp == 0xDF ? "Ss" : to_upper(cp);
}

std::string to_lower(uint32_t cp) {
  if (case_of(cp) != Case::Upper) return encode(cp);
  return encode(cp + 0x20);
}

}  // namespace

bool is_python_space(uint32_t code_point) {
  return utf8::is_python_space(code_point);
}

std::vector<size_t> code_point_offsets(std::string_view s) {
  std::vector<size_t> offsets;
  offsets.reserve(s.size() + 1);
  for (size_t pos = 0; pos < s.size();) {
    offsets.push_back(pos);
    utf8::next_code_point(s, pos);
  }
  offsets.push_back(s.size());
  return offsets;
}

size_t code_point_count(std::string_view s) {
  size_t count = 0;
  for (const char c : s) count += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return count;
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  const std::vector<uint32_t> strip_set = chars ? decode(*chars) : std::vector<uint32_t>{};
  auto stripped = [&](uint32_t cp) {
    if (!chars) return is_python_space(cp);
    for (const uint32_t c : strip_set) {
      if (c == cp) return true;
    }
    return false;
  };
  const std::vector<size_t> offsets = code_point_offsets(s);
  size_t begin = 0;
  size_t end = offsets.size() - 1;
  auto cp_at = [&](size_t i) {
    size_t pos = offsets[i];
    return utf8::next_code_point(s, pos);
  };
  while (left && begin < end && stripped(cp_at(begin))) ++begin;
  while (right && end > begin && stripped(cp_at(end - 1))) --end;
  return std::string(s.substr(offsets[begin], offsets[end] - offsets[begin]));
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit,
                               bool from_right) {
  std::vector<std::string> parts;
  if (sep) {
    QLLM_CHECK(!sep->empty(), "empty separator");
    std::string_view rest = s;
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      const size_t at = from_right ? rest.rfind(*sep) : rest.find(*sep);
      if (at == std::string_view::npos) break;
      if (from_right) {
        parts.emplace_back(rest.substr(at + sep->size()));
        rest = rest.substr(0, at);
      } else {
        parts.emplace_back(rest.substr(0, at));
        rest = rest.substr(at + sep->size());
      }
    }
    parts.emplace_back(rest);
    if (from_right) std::reverse(parts.begin(), parts.end());
    return parts;
  }
  // Whitespace runs separate the parts; leading and trailing whitespace gives no empty part.
  const std::vector<size_t> offsets = code_point_offsets(s);
  const size_t n = offsets.size() - 1;
  auto space_at = [&](size_t i) {
    size_t pos = offsets[i];
    return is_python_space(utf8::next_code_point(s, pos));
  };
  if (!from_right) {
    size_t i = 0;
    while (true) {
      while (i < n && space_at(i)) ++i;
      if (i == n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        parts.emplace_back(s.substr(offsets[i]));  // the rest, trailing whitespace included
        break;
      }
      size_t j = i;
      while (j < n && !space_at(j)) ++j;
      parts.emplace_back(s.substr(offsets[i], offsets[j] - offsets[i]));
      i = j;
    }
    return parts;
  }
  size_t i = n;
  while (true) {
    while (i > 0 && space_at(i - 1)) --i;
    if (i == 0) break;
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
      parts.emplace_back(s.substr(0, offsets[i]));  // the rest, leading whitespace included
      break;
    }
    size_t j = i;
    while (j > 0 && !space_at(j - 1)) --j;
    parts.emplace_back(s.substr(offsets[j], offsets[i] - offsets[j]));
    i = j;
  }
  std::reverse(parts.begin(), parts.end());
  return parts;
}

std::vector<std::string> splitlines(std::string_view s, bool keepends) {
  std::vector<std::string> lines;
  size_t start = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t at = pos;
    const uint32_t cp = utf8::next_code_point(s, pos);
    const bool line_break = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C ||
                            (cp >= 0x1C && cp <= 0x1E) || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
    if (!line_break) continue;
    if (cp == '\r' && pos < s.size() && s[pos] == '\n') ++pos;
    lines.emplace_back(s.substr(start, (keepends ? pos : at) - start));
    start = pos;
  }
  if (start < s.size()) lines.emplace_back(s.substr(start));
  return lines;
}

std::string replace(std::string_view s, std::string_view old_text, std::string_view new_text, int64_t count,
                    size_t max_bytes) {
  std::string out;
  auto append = [&](std::string_view part) {
    QLLM_CHECK(out.size() + part.size() <= max_bytes, "replace: the result exceeds {} bytes", max_bytes);
    out.append(part);
  };
  int64_t done = 0;
  if (old_text.empty()) {
    const std::vector<size_t> offsets = code_point_offsets(s);
    for (size_t i = 0; i + 1 < offsets.size(); ++i) {
      if (count < 0 || done < count) {
        append(new_text);
        ++done;
      }
      append(s.substr(offsets[i], offsets[i + 1] - offsets[i]));
    }
    if (count < 0 || done < count) append(new_text);
    return out;
  }
  size_t pos = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(old_text, pos);
    if (at == std::string_view::npos) break;
    append(s.substr(pos, at - pos));
    append(new_text);
    pos = at + old_text.size();
    ++done;
  }
  append(s.substr(pos));
  return out;
}

std::string upper(std::string_view s) {
  std::string out;
  for (size_t pos = 0; pos < s.size();) out += to_upper(utf8::next_code_point(s, pos));
  return out;
}

std::string lower(std::string_view s) {
  std::string out;
  for (size_t pos = 0; pos < s.size();) out += to_lower(utf8::next_code_point(s, pos));
  return out;
}

std::string capitalize(std::string_view s) {
  std::string out;
  bool first = true;
  for (size_t pos = 0; pos < s.size();) {
    const uint32_t cp = utf8::next_code_point(s, pos);
    out += first ? to_title(cp) : to_lower(cp);
    first = false;
  }
  return out;
}

std::string python_title(std::string_view s) {
  std::string out;
  bool previous_cased = false;
  for (size_t pos = 0; pos < s.size();) {
    const uint32_t cp = utf8::next_code_point(s, pos);
    const Case c = case_of(cp);
    out += c == Case::None ? encode(cp) : previous_cased ? to_lower(cp) : to_title(cp);
    previous_cased = c != Case::None;
  }
  return out;
}

std::string jinja_title(std::string_view s) {
  // Jinja: re.split(r"([-\s({\[<]+)") then item[0].upper() + item[1:].lower() for each part.
  std::string out;
  bool at_word_start = true;
  for (size_t pos = 0; pos < s.size();) {
    const uint32_t cp = utf8::next_code_point(s, pos);
    const bool separator =
        cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || is_python_space(cp);
    if (separator) {
      out += encode(cp);
      at_word_start = true;
    } else {
      out += at_word_start ? to_upper(cp) : to_lower(cp);
      at_word_start = false;
    }
  }
  return out;
}

bool is_lower(std::string_view s) {
  bool cased = false;
  for (size_t pos = 0; pos < s.size();) {
    const Case c = case_of(utf8::next_code_point(s, pos));
    if (c == Case::Upper) return false;
    cased = cased || c == Case::Lower;
  }
  return cased;
}

bool is_upper(std::string_view s) {
  bool cased = false;
  for (size_t pos = 0; pos < s.size();) {
    const Case c = case_of(utf8::next_code_point(s, pos));
    if (c == Case::Lower) return false;
    cased = cased || c == Case::Upper;
  }
  return cased;
}

}  // namespace qllm::jinja::text
