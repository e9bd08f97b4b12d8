// JSON in and out of template values: from_json (context variables given as JSON) and to_json, Python's
// json.dumps as transformers' `tojson` filter calls it (ensure_ascii, indent, separators, sort_keys;
// non-ASCII written as is by default; NaN and Infinity as Python writes them).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/utf8.h"
#include "jinja/builtins.h"
#include "jinja/template.h"
#include "qllm/error.h"

namespace qllm::jinja {

namespace {

Value from_json_at(const nlohmann::ordered_json& json, size_t depth, size_t max_depth) {
  QLLM_CHECK(depth <= max_depth, "JSON nested deeper than {} levels", max_depth);
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::boolean(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::integer(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto u = json.get<uint64_t>();
      QLLM_CHECK(u <= static_cast<uint64_t>(INT64_MAX), "JSON integer {} is too large", u);
      return Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::number(json.get<double>());
    case nlohmann::ordered_json::value_t::string: {
      const auto& s = json.get_ref<const std::string&>();
      QLLM_CHECK(!utf8::first_invalid_byte(s), "JSON string is not valid UTF-8");
      return Value::string(s);
    }
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      for (const auto& item : json) items.push_back(from_json_at(item, depth + 1, max_depth));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      DictData dict;
      for (const auto& [key, item] : json.items()) {
        QLLM_CHECK(!utf8::first_invalid_byte(key), "JSON key is not valid UTF-8");
        dict.items.emplace_back(Value::string(key), from_json_at(item, depth + 1, max_depth));
      }
      return Value::dict(std::move(dict));
    }
    default:
      fail("unsupported JSON value (binary or discarded)");
  }
}

void append_json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for (size_t pos = 0; pos < s.size();) {
    const uint32_t cp = utf8::next_code_point(s, pos);
    switch (cp) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (cp < 0x20 || (ensure_ascii && cp >= 0x7F)) {
          if (cp > 0xFFFF) {
            const uint32_t v = cp - 0x10000;
            out += fmt::format("\\u{:04x}\\u{:04x}", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
          } else {
            out += fmt::format("\\u{:04x}", cp);
          }
        } else {
          utf8::append_code_point(out, cp);
        }
    }
  }
  out += '"';
}

std::string float_json(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return float_repr(d);
}

// json.dumps converts these keys to strings; others are a TypeError.
std::string key_text(const Value& key) {
  switch (key.kind()) {
    case Kind::String:
      return key.as_string();
    case Kind::None:
      return "null";
    case Kind::Bool:
      return key.as_bool() ? "true" : "false";
    case Kind::Int:
      return std::to_string(key.as_int());
    case Kind::Float:
      return float_json(key.as_float());
    default:
      fail("tojson: keys must be str, int, float, bool or None, not {}", type_name(key));
  }
}

class JsonWriter {
 public:
  JsonWriter(const JsonOptions& options, size_t max_bytes) : options_(options), max_bytes_(max_bytes) {}

  void write(const Value& value, size_t level) {
    QLLM_CHECK(out.size() <= max_bytes_, "tojson: the output exceeds {} bytes", max_bytes_);
    switch (value.kind()) {
      case Kind::None:
        out += "null";
        return;
      case Kind::Bool:
        out += value.as_bool() ? "true" : "false";
        return;
      case Kind::Int:
        out += std::to_string(value.as_int());
        return;
      case Kind::Float:
        out += float_json(value.as_float());
        return;
      case Kind::String:
        append_json_string(out, value.as_string(), options_.ensure_ascii);
        return;
      case Kind::List:
        QLLM_CHECK(value.as_list().form != ListForm::Range && value.as_list().form != ListForm::DictItems &&
                       value.as_list().form != ListForm::DictKeys &&
                       value.as_list().form != ListForm::DictValues &&
                       value.as_list().form != ListForm::Generator,
                   "tojson: Object of type {} is not JSON serializable", type_name(value));
        write_list(value.as_list().items, level);
        return;
      case Kind::Dict:
        write_dict(value.as_dict(), level);
        return;
      default:
        fail("tojson: Object of type {} is not JSON serializable", type_name(value));
    }
  }

  std::string out;

 private:
  void newline(size_t level) {
    out += '\n';
    for (size_t i = 0; i < level; ++i) out += *options_.indent;
  }

  void write_list(const std::vector<Value>& items, size_t level) {
    if (items.empty()) {
      out += "[]";
      return;
    }
    out += '[';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out += item_separator();
      if (options_.indent) newline(level + 1);
      write(items[i], level + 1);
    }
    if (options_.indent) newline(level);
    out += ']';
  }

  void write_dict(const DictData& dict, size_t level) {
    if (dict.items.empty()) {
      out += "{}";
      return;
    }
    std::vector<const std::pair<Value, Value>*> items;
    for (const auto& item : dict.items) items.push_back(&item);
    if (options_.sort_keys) {
      std::stable_sort(items.begin(), items.end(),
                       [](const auto* a, const auto* b) { return compare(a->first, b->first, "<") < 0; });
    }
    out += '{';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out += item_separator();
      if (options_.indent) newline(level + 1);
      append_json_string(out, key_text(items[i]->first), options_.ensure_ascii);
      out += options_.key_separator;
      write(items[i]->second, level + 1);
    }
    if (options_.indent) newline(level);
    out += '}';
  }

  const std::string& item_separator() const { return options_.item_separator; }

  const JsonOptions& options_;
  size_t max_bytes_;
};

}  // namespace

Value from_json(const nlohmann::ordered_json& json, size_t max_depth) {
  return from_json_at(json, 0, max_depth);
}

std::string to_json(const Value& value, const JsonOptions& options, size_t max_bytes) {
  JsonWriter writer(options, max_bytes);
  writer.write(value, 0);
  QLLM_CHECK(writer.out.size() <= max_bytes, "tojson: the output exceeds {} bytes", max_bytes);
  return std::move(writer.out);
}

}  // namespace qllm::jinja
