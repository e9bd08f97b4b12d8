// Reading whole files, with errors that name the file: one place for every loader (config.json,
// tokenizer.json, safetensors indexes, generation_config.json, text to score or tokenize).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace qllm {

// Text and JSON files larger than this are refused before they are read (a model's tokenizer.json is ~10 MB,
// WikiText-2 ~1.3 MB).
inline constexpr uint64_t kMaxTextFileBytes = uint64_t{1} << 30;

// The file's bytes. qllm::Error "<file>: no such file", "is a directory, not a file", "is not a regular file"
// (devices such as /dev/zero; pipes are read), "cannot open file", "larger than the N byte limit" or
// "read error".
std::string read_text_file(const std::filesystem::path& file, uint64_t max_bytes = kMaxTextFileBytes);

// The file parsed as JSON (core/json.h: nesting limit, duplicate keys refused). As read_text_file, plus
// "<file>: not valid JSON: <the parser's message, with the byte position>".
nlohmann::json read_json_file(const std::filesystem::path& file);

}  // namespace qllm
