// Python str operations on valid UTF-8 for the chat-template interpreter: code point indexing, strip,
// split, splitlines, replace, and case mapping. Case mapping covers ASCII and the scripts without case
// (CJK, kana, Hangul, symbols, emoji); other letters are refused with a qllm::Error rather than mapped
// differently from Python.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qllm::jinja::text {

// Byte offsets of each code point of `s`, plus s.size() at the end (so size() - 1 code points).
std::vector<size_t> code_point_offsets(std::string_view s);
size_t code_point_count(std::string_view s);

// str.strip / lstrip / rstrip: Python whitespace when `chars` is nullopt, else the code points of `chars`.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);

// str.split(sep, maxsplit) and str.rsplit: whitespace runs when `sep` is nullopt (no empty parts).
// maxsplit < 0: no limit. Throws for an empty separator, as Python does.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit,
                               bool from_right);

// str.splitlines(keepends): splits at \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85, \u2028, \u2029.
std::vector<std::string> splitlines(std::string_view s, bool keepends);

// str.replace(old, new, count); count < 0 replaces all. An empty `old` inserts between code points.
// Throws when the result would exceed `max_bytes`.
std::string replace(std::string_view s, std::string_view old_text, std::string_view new_text, int64_t count,
                    size_t max_bytes);

// str.upper() / str.lower() / str.capitalize() / str.title(), and Jinja's `title` filter (words begin
// after whitespace, '-', '(', '{', '[' or '<').
std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string capitalize(std::string_view s);
std::string python_title(std::string_view s);
std::string jinja_title(std::string_view s);
// str.islower() / str.isupper() (at least one cased character and none of the other case).
bool is_lower(std::string_view s);
bool is_upper(std::string_view s);

bool is_python_space(uint32_t code_point);

}  // namespace qllm::jinja::text
