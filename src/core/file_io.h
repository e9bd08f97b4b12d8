// Reading whole files, with errors that name the file: one place for every loader (config.json,
// tokenizer.json, safetensors indexes, generation_config.json, text to score or tokenize).
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace qllm {

// The file's bytes. qllm::Error "<file>: cannot open file" (missing, unreadable), "is a directory, not a
// file", or "read error".
std::string read_text_file(const std::filesystem::path& file);

// The file parsed as JSON. As read_text_file, plus "<file>: not valid JSON: <the parser's message, with
// the byte position>".
nlohmann::json read_json_file(const std::filesystem::path& file);

}  // namespace qllm
