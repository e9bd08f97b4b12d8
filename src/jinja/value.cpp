// Value semantics of the chat-template interpreter: Python's equality, ordering, truthiness, str() and
// repr() of the values a Jinja template handles.
#include "jinja/value.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "core/utf8.h"
#include "qllm/error.h"

namespace qllm::jinja {

const Value* DictData::find(const Value& key) const {
  for (const auto& [k, v] : items) {
    if (equal(k, key)) return &v;
  }
  return nullptr;
}

void DictData::set(Value key, Value value) {
  for (auto& [k, v] : items) {
    if (equal(k, key)) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(value));
}

const Value* ObjectData::find(std::string_view name) const {
  for (const auto& [k, v] : attributes) {
    if (k == name) return &v;
  }
  return nullptr;
}

void ObjectData::set(std::string_view name, Value value) {
  QLLM_CHECK(value.kind() != Kind::Object, "storing a {} object in a namespace is not supported",
             type_name(value));
  for (auto& [k, v] : attributes) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  attributes.emplace_back(std::string(name), std::move(value));
}

namespace {

// 1 + the deepest element, checked against kMaxValueDepth; objects may not be elements.
size_t container_depth(const Value& element, size_t depth) {
  QLLM_CHECK(element.kind() != Kind::Object,
             "storing a {} object in a list, dict or namespace is not supported", type_name(element));
  depth = std::max(depth, element.depth() + 1);
  QLLM_CHECK(depth <= kMaxValueDepth, "lists and dicts nested deeper than {} levels", kMaxValueDepth);
  return depth;
}

}  // namespace

Value Value::list(std::vector<Value> items, ListForm form) {
  auto data = std::make_shared<ListData>();
  for (const Value& item : items) data->depth = container_depth(item, data->depth);
  data->items = std::move(items);
  data->form = form;
  return Value(Kind::List, std::shared_ptr<const ListData>(std::move(data)));
}

Value Value::dict(DictData data) {
  data.depth = 1;
  for (const auto& [key, value] : data.items) {
    data.depth = container_depth(key, data.depth);
    data.depth = container_depth(value, data.depth);
  }
  return Value(Kind::Dict, std::shared_ptr<const DictData>(std::make_shared<DictData>(std::move(data))));
}

size_t Value::depth() const {
  if (kind_ == Kind::List) return as_list().depth;
  if (kind_ == Kind::Dict) return as_dict().depth;
  return 0;
}

int64_t Value::as_int() const {
  return kind_ == Kind::Bool ? static_cast<int64_t>(std::get<bool>(data_)) : std::get<int64_t>(data_);
}

double Value::as_float() const {
  return kind_ == Kind::Float ? std::get<double>(data_) : static_cast<double>(as_int());
}

std::string Value::undefined_message() const {
  const auto* hint = std::get_if<std::string>(&data_);
  return hint != nullptr && !hint->empty() ? *hint : "value is undefined";
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None:
      return false;
    case Kind::Bool:
      return as_bool();
    case Kind::Int:
      return as_int() != 0;
    case Kind::Float:
      return as_float() != 0.0;
    case Kind::String:
      return !as_string().empty();
    case Kind::List:
      return as_list().form == ListForm::Generator || !as_list().items.empty();
    case Kind::Dict:
      return !as_dict().items.empty();
    case Kind::Object:
    case Kind::Callable:
      return true;
  }
  return false;
}

bool Value::same_object(const Value& other) const {
  if (kind_ != other.kind_) return false;
  if (kind_ == Kind::Object) return &as_object() == &other.as_object();
  if (kind_ == Kind::Callable) return as_callable() == other.as_callable();
  return false;
}

std::string type_name(const Value& value) {
  switch (value.kind()) {
    case Kind::Undefined:
      return "Undefined";
    case Kind::None:
      return "NoneType";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::Float:
      return "float";
    case Kind::String:
      return "str";
    case Kind::List:
      switch (value.as_list().form) {
        case ListForm::Tuple:
          return "tuple";
        case ListForm::DictItems:
          return "dict_items";
        case ListForm::DictKeys:
          return "dict_keys";
        case ListForm::DictValues:
          return "dict_values";
        case ListForm::Range:
          return "range";
        case ListForm::Generator:
          return "generator";
        case ListForm::List:
          break;
      }
      return "list";
    case Kind::Dict:
      return "dict";
    case Kind::Object:
      return value.as_object().type == ObjectData::Type::Loop ? "LoopContext" : "Namespace";
    case Kind::Callable:
      return "function";
  }
  return "object";
}

namespace {

bool is_tuple(const Value& v) {
  return v.is_list() && v.as_list().form == ListForm::Tuple;
}

}  // namespace

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Kind::Float || b.kind() == Kind::Float) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::Undefined:
    case Kind::None:
      return true;
    case Kind::String:
      return a.as_string() == b.as_string();
    case Kind::List: {
      if (a.as_list().form != b.as_list().form) return false;  // [1] != (1,); views and ranges apart
      if (a.as_list().form == ListForm::Generator) return &a.as_list() == &b.as_list();  // identity
      const auto& x = a.as_list().items;
      const auto& y = b.as_list().items;
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!equal(x[i], y[i])) return false;
      }
      return true;
    }
    case Kind::Dict: {
      const auto& x = a.as_dict().items;
      if (x.size() != b.as_dict().items.size()) return false;
      for (const auto& [k, v] : x) {
        const Value* other = b.as_dict().find(k);
        if (other == nullptr || !equal(v, *other)) return false;
      }
      return true;
    }
    default:
      return a.same_object(b);
  }
}

int compare(const Value& a, const Value& b, std::string_view op) {
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Kind::Float || b.kind() == Kind::Float) {
      const double x = a.as_float();
      const double y = b.as_float();
      return x < y ? -1 : x > y ? 1 : 0;  // NaN compares as "equal" here; only < and > use the sign
    }
    return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    // Byte order of UTF-8 is code point order, which is Python's string order.
    const int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list() && is_tuple(a) == is_tuple(b)) {
    const auto& x = a.as_list().items;
    const auto& y = b.as_list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equal(x[i], y[i])) return compare(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  fail("'{}' not supported between instances of '{}' and '{}'", op, type_name(a), type_name(b));
}

std::string float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  const std::string_view sci(buffer, static_cast<size_t>(result.ptr - buffer));  // "-1.2345e+17"
  const size_t e = sci.find('e');
  const bool negative = sci[0] == '-';
  std::string digits;
  for (const char c : sci.substr(negative ? 1 : 0, e - (negative ? 1 : 0))) {
    if (c != '.') digits += c;
  }
  const int exponent = std::atoi(std::string(sci.substr(e + 1)).c_str());
  std::string out = negative ? "-" : "";
  // Python's repr: positional notation for 1e-4 <= |x| < 1e16, else scientific.
  if (exponent < -4 || exponent >= 16) {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out.append(digits, 1);
    }
    out += fmt::format("e{}{:02d}", exponent < 0 ? '-' : '+', std::abs(exponent));
  } else if (exponent < 0) {
    out += "0.";
    out.append(static_cast<size_t>(-exponent - 1), '0');
    out += digits;
  } else {
    const auto integer_digits = static_cast<size_t>(exponent) + 1;
    if (digits.size() <= integer_digits) {
      out += digits;
      out.append(integer_digits - digits.size(), '0');
      out += ".0";
    } else {
      out.append(digits, 0, integer_digits);
      out += '.';
      out.append(digits, integer_digits);
    }
  }
  return out;
}

namespace {

// Code points Python's str.isprintable() rejects that repr() therefore escapes: controls, the C1 block,
// separators other than the ASCII space, format characters and private use. (Unassigned code points,
// which Python also escapes, would need the Unicode tables; they are written as they are.)
bool python_escapes(uint32_t cp) {
  if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return true;
  if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F)) return true;
  if ((cp >= 0x205F && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF) {
    return true;
  }
  if (cp == 0x061C || cp == 0x180E || (cp >= 0xFFF9 && cp <= 0xFFFB)) return true;
  return (cp >= 0xE000 && cp <= 0xF8FF) || cp >= 0xF0000;
}

std::string string_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  size_t pos = 0;
  while (pos < s.size()) {
    const uint32_t cp = utf8::next_code_point(s, pos);
    if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (python_escapes(cp)) {
      out += cp <= 0xFF     ? fmt::format("\\x{:02x}", cp)
             : cp <= 0xFFFF ? fmt::format("\\u{:04x}", cp)
                            : fmt::format("\\U{:08x}", cp);
    } else {
      utf8::append_code_point(out, cp);
    }
  }
  out += quote;
  return out;
}

std::string sequence_repr(const ListData& list) {
  std::string out;
  const bool tuple = list.form == ListForm::Tuple;
  out += tuple ? "(" : "[";
  for (size_t i = 0; i < list.items.size(); ++i) {
    if (i > 0) out += ", ";
    out += to_repr(list.items[i]);
  }
  if (tuple && list.items.size() == 1) out += ",";
  out += tuple ? ")" : "]";
  switch (list.form) {
    case ListForm::DictItems:
      return "dict_items(" + out + ")";
    case ListForm::DictKeys:
      return "dict_keys(" + out + ")";
    case ListForm::DictValues:
      return "dict_values(" + out + ")";
    case ListForm::Range:
      fail("printing a range object is not supported");
    case ListForm::Generator:
      fail("printing a generator (the result of select, map, unique, items or reverse) is not supported");
    case ListForm::List:
    case ListForm::Tuple:
      break;
  }
  return out;
}

std::string dict_repr(const DictData& dict) {
  std::string out = "{";
  for (size_t i = 0; i < dict.items.size(); ++i) {
    if (i > 0) out += ", ";
    out += to_repr(dict.items[i].first) + ": " + to_repr(dict.items[i].second);
  }
  return out + "}";
}

}  // namespace

std::string to_repr(const Value& value) {
  switch (value.kind()) {
    case Kind::Undefined:
      return "Undefined";
    case Kind::String:
      return string_repr(value.as_string());
    default:
      return to_str(value);
  }
}

std::string to_str(const Value& value) {
  switch (value.kind()) {
    case Kind::Undefined:
      return "";
    case Kind::None:
      return "None";
    case Kind::Bool:
      return value.as_bool() ? "True" : "False";
    case Kind::Int:
      return std::to_string(value.as_int());
    case Kind::Float:
      return float_repr(value.as_float());
    case Kind::String:
      return value.as_string();
    case Kind::List:
      return sequence_repr(value.as_list());
    case Kind::Dict:
      return dict_repr(value.as_dict());
    case Kind::Object: {
      const ObjectData& object = value.as_object();
      QLLM_CHECK(object.type == ObjectData::Type::Namespace, "printing a loop object is not supported");
      DictData attributes;
      for (const auto& [k, v] : object.attributes) attributes.items.emplace_back(Value::string(k), v);
      return "<Namespace " + dict_repr(attributes) + ">";
    }
    case Kind::Callable:
      fail("printing {} is not supported", value.as_callable()->describe());
  }
  return "";
}

void check_hashable(const Value& key) {
  switch (key.kind()) {
    case Kind::None:
    case Kind::Bool:
    case Kind::Int:
    case Kind::Float:
    case Kind::String:
      return;
    case Kind::List:
      if (key.as_list().form == ListForm::Tuple) {
        for (const Value& item : key.as_list().items) check_hashable(item);
        return;
      }
      break;
    default:
      break;
  }
  fail("unhashable type: '{}'", type_name(key));
}

}  // namespace qllm::jinja
