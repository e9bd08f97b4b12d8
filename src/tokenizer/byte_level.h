// GPT-2's byte-to-unicode table (HF's ByteLevel pre-tokenizer and decoder): every byte gets a printable
// stand-in character so that vocabularies are readable text. Printable Latin-1 bytes stand for
// themselves; the other 68 (controls, space, DEL, NBSP, soft hyphen) map to U+0100 onwards, in order.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qllm::byte_level {

// The stand-in code point of a byte.
uint32_t stand_in(uint8_t byte);

// The byte a stand-in code point stands for, or nullopt for a character outside the table.
std::optional<uint8_t> byte_of(uint32_t code_point);

// Vocabulary string -> the bytes it stands for; nullopt when it holds a character outside the table.
std::optional<std::string> bytes_of(std::string_view vocab_string);

// Vocabulary string -> the bytes it stands for. A string holding any character outside the table is
// returned unchanged (its own UTF-8 bytes), as HF's ByteLevel decoder does for such a token.
std::string decode_token(std::string_view vocab_string);

}  // namespace qllm::byte_level
