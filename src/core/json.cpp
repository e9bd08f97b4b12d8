#include "core/json.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_set>
#include <vector>

#include "qllm/error.h"

namespace qllm {

namespace {

using json = nlohmann::json;

// True when no array or object in `text` nests deeper than max_depth. A linear scan before the parser sees
// the text: the parser and the destructor of a deep value may recurse once per level.
bool nesting_within(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

}  // namespace

json parse_json(std::string_view text, std::string_view label, JsonLimits limits) {
  QLLM_CHECK(nesting_within(text, limits.max_depth), "{}: JSON nests deeper than {} levels", label,
             limits.max_depth);
  try {
    if (!limits.reject_duplicate_keys) return json::parse(text);
    // One set of keys per open object, innermost last.
    std::vector<std::unordered_set<std::string>> keys;
    const json::parser_callback_t check_keys = [&](int, json::parse_event_t event, json& parsed) {
      switch (event) {
        case json::parse_event_t::object_start:
          keys.emplace_back();
          break;
        case json::parse_event_t::object_end:
          keys.pop_back();
          break;
        case json::parse_event_t::key:
          QLLM_CHECK(keys.back().insert(parsed.get<std::string>()).second,
                     "{}: key {} appears twice in one object", label, json_excerpt(parsed));
          break;
        default:
          break;
      }
      return true;
    };
    return json::parse(text, check_keys);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", label, e.what());
  }
}

std::string json_excerpt(const json& value) {
  constexpr size_t kMaxChars = 60;
  switch (value.type()) {
    case json::value_t::array:
    case json::value_t::object: {
      // A flat, short container reads best as itself ([1, 2, 3]); anything nested or long by its size.
      const bool flat =
          std::all_of(value.begin(), value.end(), [](const json& v) { return v.is_primitive(); });
      if (flat && value.size() <= 8) {
        std::string text = value.dump();
        if (text.size() <= 2 * kMaxChars) return text;
      }
      return fmt::format("{} of {} {}", value.is_array() ? "an array" : "an object", value.size(),
                         value.is_array() ? "elements" : "keys");
    }
    case json::value_t::string: {
      const auto& s = value.get_ref<const std::string&>();
      if (s.size() <= kMaxChars) return value.dump();
      // Cut at a UTF-8 character boundary so that the excerpt stays valid text.
      size_t cut = kMaxChars;
      while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;
      return json(s.substr(0, cut)).dump() + fmt::format("... ({} bytes)", s.size());
    }
    default:
      return value.dump();  // a scalar: short by construction
  }
}

}  // namespace qllm
