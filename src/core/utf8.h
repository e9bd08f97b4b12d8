// UTF-8 helpers shared by the tokenizer and the chat-template interpreter: strict validation of input
// text, the lossy decoding HF applies to decoded bytes (Rust's String::from_utf8_lossy), and the incomplete
// tail that streaming holds back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qllm::utf8 {

// Offset of the first byte that does not start a valid UTF-8 sequence (overlong forms, surrogates and
// code points above U+10FFFF are invalid), or nullopt when all of `text` is valid.
std::optional<size_t> first_invalid_byte(std::string_view text);

// Throws qllm::Error "<what>: invalid UTF-8 at byte offset N (byte 0xXX)" when `text` is not valid.
void check_valid(std::string_view text, std::string_view what);

// Replaces every maximal invalid subsequence by U+FFFD, exactly like Rust's from_utf8_lossy.
std::string to_valid_lossy(std::string_view bytes);

// Length of the suffix of `bytes` that is the beginning of a valid UTF-8 sequence still missing bytes
// (0 to 3): what a streaming decoder must hold back because a later token may complete it.
size_t incomplete_suffix_length(std::string_view bytes);

// Appends the UTF-8 encoding of a code point (which must be a valid scalar value).
void append_code_point(std::string& out, uint32_t code_point);

// Decodes the code point at `pos` of valid UTF-8 and advances `pos` past it.
uint32_t next_code_point(std::string_view text, size_t& pos);

// Python's str.isspace(), which Jinja's `trim` filter strips.
bool is_python_space(uint32_t code_point);

// Unicode White_Space, Rust's char::is_whitespace (HF's lstrip/rstrip of added tokens).
bool is_white_space(uint32_t code_point);

}  // namespace qllm::utf8
