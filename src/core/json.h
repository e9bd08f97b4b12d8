// JSON from files we do not control (config.json, tokenizer.json, safetensors headers, HTTP bodies): parsed
// with a nesting limit and duplicate keys refused, and quoted in error messages only as a bounded excerpt.
// nlohmann::json's dump() recurses once per nesting level, so an error path that dumps an untrusted value can
// overflow the stack; json_excerpt() never does.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace qllm {

struct JsonLimits {
  int max_depth = 64;                 // arrays and objects nested deeper are an error
  bool reject_duplicate_keys = true;  // an object naming one key twice is corrupt or crafted, not "last wins"
};

// Parses `text`; qllm::Error "<label>: not valid JSON: ...", "<label>: JSON nests deeper than N levels" or
// "<label>: key 'k' appears twice in one object (at byte B)".
nlohmann::json parse_json(std::string_view text, std::string_view label, JsonLimits limits = {});

// A short description of a value for error messages: scalars as JSON (strings cut to ~60 characters), arrays
// and objects by their type and size ("an array of 3 elements"), never the nested content.
std::string json_excerpt(const nlohmann::json& value);

}  // namespace qllm
