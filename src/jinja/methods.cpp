// Attribute and item lookup, slicing, iteration, the str / dict / list / loop methods and the globals of
// the chat-template interpreter (see builtins.h), with Python's semantics as Jinja2's sandbox exposes them.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>

#include "core/utf8.h"
#include "jinja/args.h"
#include "jinja/builtins.h"
#include "jinja/text.h"
#include "qllm/error.h"

namespace qllm::jinja {

void Budget::step(uint64_t count) {
  steps_ += count;
  QLLM_CHECK(steps_ <= limits_.max_steps,
             "rendering took more than {} steps (loop iterations, statements, calls)", limits_.max_steps);
}

void Budget::check_size(size_t bytes) const {
  QLLM_CHECK(bytes <= limits_.max_output_bytes, "a value or the output would exceed {} bytes",
             limits_.max_output_bytes);
}

std::string BoundMethod::describe() const {
  return fmt::format("method {}.{}", type_name(receiver), name);
}

namespace {

constexpr std::string_view kStrMethods[] = {
    "capitalize", "casefold",     "center",       "count",   "encode",     "endswith",    "expandtabs",
    "find",       "format",       "format_map",   "index",   "isalnum",    "isalpha",     "isascii",
    "isdecimal",  "isdigit",      "isidentifier", "islower", "isnumeric",  "isprintable", "isspace",
    "istitle",    "isupper",      "join",         "ljust",   "lower",      "lstrip",      "maketrans",
    "partition",  "removeprefix", "removesuffix", "replace", "rfind",      "rindex",      "rjust",
    "rpartition", "rsplit",       "rstrip",       "split",   "splitlines", "startswith",  "strip",
    "swapcase",   "title",        "translate",    "upper",   "zfill"};
constexpr std::string_view kDictMethods[] = {"clear", "copy",    "fromkeys",   "get",    "items", "keys",
                                             "pop",   "popitem", "setdefault", "update", "values"};
constexpr std::string_view kListMethods[] = {"append", "clear", "copy",   "count",   "extend", "index",
                                             "insert", "pop",   "remove", "reverse", "sort"};

// Subscriptable sequences: list, tuple, range (not dict views or generators).
bool is_sequence_list(const Value& v) {
  return v.is_list() && (v.as_list().form == ListForm::List || v.as_list().form == ListForm::Tuple ||
                         v.as_list().form == ListForm::Range);
}

bool has_method(const Value& object, std::string_view name) {
  switch (object.kind()) {
    case Kind::String:
      return listed(kStrMethods, name);
    case Kind::Dict:
      return listed(kDictMethods, name);
    case Kind::List:
      if (object.as_list().form == ListForm::List) return listed(kListMethods, name);
      return is_sequence_list(object) && (name == "count" || name == "index");
    case Kind::Object:
      return object.as_object().type == ObjectData::Type::Loop && name == "cycle";
    default:
      return false;
  }
}

// Jinja2's object_type_repr, for undefined messages.
std::string object_type_repr(const Value& object) {
  if (object.is_none()) return "None";
  return type_name(object) + " object";
}

Value bound(const Value& object, std::string_view name) {
  return Value::callable(std::make_shared<BoundMethod>(object, std::string(name)));
}

void refuse_unsafe(std::string_view name) {
  QLLM_CHECK(!name.starts_with("_"),
             "access to the attribute '{}' is unsafe (names starting with '_' are refused)", name);
}

// A Python index into a sequence of n items: nullopt when out of range.
std::optional<size_t> sequence_index(const Value& key, size_t n) {
  const int64_t i = key.as_int();
  const int64_t size = static_cast<int64_t>(n);
  const int64_t adjusted = i < 0 ? i + size : i;
  if (adjusted < 0 || adjusted >= size) return std::nullopt;
  return static_cast<size_t>(adjusted);
}

}  // namespace

Value get_attribute(const Value& object, std::string_view name) {
  refuse_unsafe(name);
  if (object.is_undefined()) fail("{}", object.undefined_message());
  QLLM_CHECK(!object.is_number(), "attributes of {} values are not supported ('{}')", type_name(object),
             name);
  if (has_method(object, name)) return bound(object, name);
  if (object.is_dict()) {
    if (const Value* v = object.as_dict().find(Value::string(std::string(name)))) return *v;
  } else if (object.kind() == Kind::Object) {
    if (const Value* v = object.as_object().find(name)) return *v;
  }
  return Value::undefined(fmt::format("'{}' has no attribute '{}'", object_type_repr(object), name));
}

Value get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) fail("{}", object.undefined_message());
  const bool int_key = key.kind() == Kind::Int || key.kind() == Kind::Bool;
  if (object.is_dict()) {
    check_hashable(key);
    if (const Value* v = object.as_dict().find(key)) return *v;
  } else if (is_sequence_list(object) && int_key) {
    if (const auto i = sequence_index(key, object.as_list().items.size())) return object.as_list().items[*i];
  } else if (object.is_string() && int_key) {
    const std::vector<size_t> offsets = text::code_point_offsets(object.as_string());
    if (const auto i = sequence_index(key, offsets.size() - 1)) {
      return Value::string(object.as_string().substr(offsets[*i], offsets[*i + 1] - offsets[*i]));
    }
  }
  // Jinja2's getitem falls back to getattr for string keys.
  if (key.is_string() && !object.is_dict()) return get_attribute(object, key.as_string());
  if (key.is_string() && has_method(object, key.as_string())) return bound(object, key.as_string());
  if (key.is_string()) {
    return Value::undefined(
        fmt::format("'{}' has no attribute '{}'", object_type_repr(object), key.as_string()));
  }
  return Value::undefined(fmt::format("'{}' has no element {}", object_type_repr(object), to_repr(key)));
}

namespace {

// Python's slice.indices(n) for the given start / stop / step values (None or undefined: absent).
struct SliceRange {
  int64_t start, stop, step;
};

SliceRange slice_indices(const Value& start_v, const Value& stop_v, const Value& step_v, size_t n) {
  auto as_index = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_undefined()) fail("{}", v.undefined_message());
    if (v.is_none()) return std::nullopt;
    QLLM_CHECK(v.kind() == Kind::Int || v.kind() == Kind::Bool, "slice {} must be an integer or None, not {}",
               what, type_name(v));
    return v.as_int();
  };
  const int64_t size = static_cast<int64_t>(n);
  const int64_t step = as_index(step_v, "step").value_or(1);
  QLLM_CHECK(step != 0, "slice step cannot be zero");
  QLLM_CHECK(step > INT64_MIN, "slice step out of range");
  // CPython's PySlice_AdjustIndices.
  auto clamp = [&](std::optional<int64_t> v, int64_t absent) {
    if (!v) return absent;
    int64_t i = *v;
    if (i < 0) {
      i += size;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= size) {
      i = step < 0 ? size - 1 : size;
    }
    return i;
  };
  return {clamp(as_index(start_v, "start"), step < 0 ? size - 1 : 0),
          clamp(as_index(stop_v, "stop"), step < 0 ? -1 : size), step};
}

std::vector<size_t> slice_positions(const SliceRange& r) {
  std::vector<size_t> out;
  if (r.step > 0) {
    for (int64_t i = r.start; i < r.stop; i += r.step) out.push_back(static_cast<size_t>(i));
  } else {
    for (int64_t i = r.start; i > r.stop; i += r.step) out.push_back(static_cast<size_t>(i));
  }
  return out;
}

}  // namespace

Value get_slice(Budget& budget, const Value& object, const Value& start, const Value& stop,
                const Value& step) {
  if (object.is_undefined()) fail("{}", object.undefined_message());
  if (object.is_string()) {
    const std::string& s = object.as_string();
    const std::vector<size_t> offsets = text::code_point_offsets(s);
    std::string out;
    for (const size_t i : slice_positions(slice_indices(start, stop, step, offsets.size() - 1))) {
      out.append(s, offsets[i], offsets[i + 1] - offsets[i]);
    }
    return Value::string(std::move(out));
  }
  QLLM_CHECK(object.is_list(), "'{}' object is not subscriptable", type_name(object));
  const ListData& list = object.as_list();
  std::vector<Value> items;
  for (const size_t i : slice_positions(slice_indices(start, stop, step, list.items.size()))) {
    items.push_back(list.items[i]);
  }
  budget.check_size(items.size() * sizeof(Value));
  const ListForm form = list.form == ListForm::Tuple ? ListForm::Tuple : ListForm::List;
  QLLM_CHECK(list.form != ListForm::DictItems && list.form != ListForm::DictKeys &&
                 list.form != ListForm::DictValues,
             "'{}' object is not subscriptable", type_name(object));
  return Value::list(std::move(items), form);
}

bool contains(const Value& haystack, const Value& needle) {
  switch (haystack.kind()) {
    case Kind::Undefined:
      return false;
    case Kind::String:
      QLLM_CHECK(needle.is_string(), "'in <string>' requires string as left operand, not {}",
                 type_name(needle));
      return haystack.as_string().find(needle.as_string()) != std::string::npos;
    case Kind::List:
      for (const Value& item :
           haystack.as_list().form == ListForm::Generator ? iterate(haystack) : haystack.as_list().items) {
        if (equal(item, needle)) return true;
      }
      return false;
    case Kind::Dict:
      check_hashable(needle);
      return haystack.as_dict().find(needle) != nullptr;
    default:
      fail("argument of type '{}' is not iterable", type_name(haystack));
  }
}

std::vector<Value> iterate(const Value& value) {
  std::vector<Value> out;
  switch (value.kind()) {
    case Kind::Undefined:
      return out;
    case Kind::String: {
      const std::string& s = value.as_string();
      const std::vector<size_t> offsets = text::code_point_offsets(s);
      for (size_t i = 0; i + 1 < offsets.size(); ++i) {
        out.push_back(Value::string(s.substr(offsets[i], offsets[i + 1] - offsets[i])));
      }
      return out;
    }
    case Kind::List:
      if (value.as_list().form == ListForm::Generator) {
        QLLM_CHECK(
            !value.as_list().consumed,
            "a generator (the result of select, map, unique, items or reverse) used a second time is not "
            "supported");
        value.as_list().consumed = true;
      }
      return value.as_list().items;
    case Kind::Dict:
      for (const auto& [k, v] : value.as_dict().items) out.push_back(k);
      return out;
    default:
      fail("'{}' object is not iterable", type_name(value));
  }
}

namespace {

std::string string_arg(const Value& v, std::string_view what) {
  QLLM_CHECK(v.is_string(), "{} must be a string, not {}", what, type_name(v));
  return v.as_string();
}

std::optional<std::string> optional_string_arg(const Value* v, std::string_view what) {
  if (v == nullptr || v->is_none()) return std::nullopt;
  return string_arg(*v, what);
}

int64_t int_arg(const Value& v, std::string_view what) {
  QLLM_CHECK(v.kind() == Kind::Int || v.kind() == Kind::Bool, "{} must be an integer, not {}", what,
             type_name(v));
  return v.as_int();
}

Value string_list(std::vector<std::string> parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (auto& part : parts) items.push_back(Value::string(std::move(part)));
  return Value::list(std::move(items));
}

// startswith / endswith: a string or a tuple of strings.
bool affix_match(const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const Value& v) {
    const std::string a = string_arg(v, prefix ? "startswith argument" : "endswith argument");
    return prefix ? std::string_view(s).starts_with(a) : std::string_view(s).ends_with(a);
  };
  if (affix.is_list() && affix.as_list().form == ListForm::Tuple) {
    return std::any_of(affix.as_list().items.begin(), affix.as_list().items.end(), one);
  }
  return one(affix);
}

// Code point index of a byte offset.
int64_t code_point_index(const std::string& s, size_t byte_offset) {
  return static_cast<int64_t>(text::code_point_count(std::string_view(s).substr(0, byte_offset)));
}

Value str_method(Budget& budget, const std::string& s, const std::string& name, CallArgs args) {
  const std::string fn = "str." + name;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    Params p(fn, std::move(args), {"chars"});
    return Value::string(
        text::strip(s, optional_string_arg(p.get(0), "chars"), name != "rstrip", name != "lstrip"));
  }
  if (name == "startswith" || name == "endswith") {
    Params p(fn, std::move(args), {"prefix"});
    return Value::boolean(affix_match(s, p.required(0), name == "startswith"));
  }
  if (name == "split" || name == "rsplit") {
    Params p(fn, std::move(args), {"sep", "maxsplit"});
    const int64_t maxsplit = p.get(1) ? int_arg(*p.get(1), "maxsplit") : -1;
    return string_list(text::split(s, optional_string_arg(p.get(0), "sep"), maxsplit, name == "rsplit"));
  }
  if (name == "splitlines") {
    Params p(fn, std::move(args), {"keepends"});
    return string_list(text::splitlines(s, p.get(0) != nullptr && p.get(0)->truthy()));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    Params p(fn, std::move(args), {});
    return Value::string(name == "upper"   ? text::upper(s)
                         : name == "lower" ? text::lower(s)
                         : name == "title" ? text::python_title(s)
                                           : text::capitalize(s));
  }
  if (name == "islower" || name == "isupper" || name == "isspace" || name == "isdigit" || name == "isalpha" ||
      name == "isalnum") {
    Params p(fn, std::move(args), {});
    if (name == "islower") return Value::boolean(text::is_lower(s));
    if (name == "isupper") return Value::boolean(text::is_upper(s));
    if (s.empty()) return Value::boolean(false);
    bool all = true;
    for (size_t pos = 0; pos < s.size() && all;) {
      const uint32_t cp = utf8::next_code_point(s, pos);
      if (name == "isspace") {
        all = text::is_python_space(cp);
        continue;
      }
      QLLM_CHECK(cp < 0x80, "str.{}() of non-ASCII text is not supported", name);
      const bool digit = cp >= '0' && cp <= '9';
      const bool alpha = (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
      all = name == "isdigit" ? digit : name == "isalpha" ? alpha : (digit || alpha);
    }
    return Value::boolean(all);
  }
  if (name == "replace") {
    Params p(fn, std::move(args), {"old", "new", "count"});
    const int64_t count = p.get(2) ? int_arg(*p.get(2), "count") : -1;
    return Value::string(text::replace(s, string_arg(p.required(0), "old"), string_arg(p.required(1), "new"),
                                       count, budget.limits().max_output_bytes));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    Params p(fn, std::move(args), {"affix"});
    const std::string affix = string_arg(p.required(0), "argument");
    std::string_view view(s);
    if (name == "removeprefix" && view.starts_with(affix)) view.remove_prefix(affix.size());
    if (name == "removesuffix" && view.ends_with(affix)) view.remove_suffix(affix.size());
    return Value::string(std::string(view));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    Params p(fn, std::move(args), {"sub"});
    const std::string sub = string_arg(p.required(0), "substring");
    const size_t at = name == "find" || name == "index" ? s.find(sub) : s.rfind(sub);
    if (at == std::string::npos) {
      QLLM_CHECK(name == "find" || name == "rfind", "substring not found");
      return Value::integer(-1);
    }
    return Value::integer(code_point_index(s, at));
  }
  if (name == "count") {
    Params p(fn, std::move(args), {"sub"});
    const std::string sub = string_arg(p.required(0), "substring");
    if (sub.empty()) return Value::integer(static_cast<int64_t>(text::code_point_count(s)) + 1);
    int64_t count = 0;
    for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++count;
    return Value::integer(count);
  }
  if (name == "join") {
    Params p(fn, std::move(args), {"iterable"});
    std::string out;
    bool first = true;
    for (const Value& item : iterate(p.required(0))) {
      QLLM_CHECK(item.is_string(), "str.join: sequence item must be a string, not {}", type_name(item));
      if (!first) out += s;
      out += item.as_string();
      first = false;
      budget.check_size(out.size());
    }
    return Value::string(std::move(out));
  }
  fail("the string method {}() is not supported", name);
}

Value dict_method(const Value& dict, const std::string& name, CallArgs args) {
  const std::string fn = "dict." + name;
  if (name == "get") {
    Params p(fn, std::move(args), {"key", "?default"});
    check_hashable(p.required(0));
    const Value* v = dict.as_dict().find(p.required(0));
    return v != nullptr ? *v : p.get(1) != nullptr ? *p.get(1) : Value::none();
  }
  if (name == "items" || name == "keys" || name == "values") {
    Params p(fn, std::move(args), {});
    std::vector<Value> out;
    for (const auto& [k, v] : dict.as_dict().items) {
      if (name == "items") {
        out.push_back(Value::list({k, v}, ListForm::Tuple));
      } else {
        out.push_back(name == "keys" ? k : v);
      }
    }
    return Value::list(std::move(out), name == "items"  ? ListForm::DictItems
                                       : name == "keys" ? ListForm::DictKeys
                                                        : ListForm::DictValues);
  }
  if (name == "copy") {
    Params p(fn, std::move(args), {});
    return dict;
  }
  fail("the dict method {}() is not supported (templates cannot modify dicts)", name);
}

Value list_method(const Value& list, const std::string& name, CallArgs args) {
  const std::string fn = type_name(list) + "." + name;
  if (name == "count" || name == "index") {
    Params p(fn, std::move(args), {"value"});
    const auto& items = list.as_list().items;
    int64_t count = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!equal(items[i], p.required(0))) continue;
      if (name == "index") return Value::integer(static_cast<int64_t>(i));
      ++count;
    }
    QLLM_CHECK(name == "count", "{}(x): x not in list", fn);
    return Value::integer(count);
  }
  if (name == "copy") {
    Params p(fn, std::move(args), {});
    return list;
  }
  fail("the list method {}() is not supported (templates cannot modify lists)", name);
}

}  // namespace

Value call_method(Budget& budget, const BoundMethod& method, CallArgs args) {
  budget.step();
  const Value& receiver = method.receiver;
  switch (receiver.kind()) {
    case Kind::String:
      return str_method(budget, receiver.as_string(), method.name, std::move(args));
    case Kind::Dict:
      return dict_method(receiver, method.name, std::move(args));
    case Kind::List:
      return list_method(receiver, method.name, std::move(args));
    case Kind::Object: {  // loop.cycle(a, b, ...)
      QLLM_CHECK(args.keyword.empty() && !args.positional.empty(),
                 "loop.cycle() takes one or more positional arguments");
      const Value* index0 = receiver.as_object().find("index0");
      return args.positional[static_cast<size_t>(index0->as_int()) % args.positional.size()];
    }
    default:
      fail("{} is not supported", method.describe());
  }
}

namespace {

// transformers' strftime_now: datetime.now().strftime(format), in the C locale. Python handles %f, %z
// and %Z itself (a naive datetime has no zone: %z and %Z write nothing); the rest is the C strftime.
std::string strftime_now(std::string format) {
  format = format.substr(0, format.find('\0'));  // the C strftime Python calls ends at a NUL
  QLLM_CHECK(format.size() <= 256, "strftime_now: format longer than 256 bytes");
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::string c_format;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] == '%' && i + 1 < format.size()) {
      const char d = format[++i];
      if (d == 'f') {
        c_format += fmt::format("{:06d}", micros);
      } else if (d != 'z' && d != 'Z') {
        c_format += '%';
        c_format += d;
      }
    } else if (format[i] == '%') {
      c_format += "%%";  // a lone final '%' is written as it is
    } else {
      c_format += format[i];
    }
  }
  std::tm local{};
  QLLM_CHECK(localtime_r(&seconds, &local) != nullptr, "strftime_now: cannot read the local time");
  c_format += '.';  // strftime returns 0 for an empty result too: keep the result non-empty
  std::string out(c_format.size() * 8 + 64, '\0');
  const size_t n = std::strftime(out.data(), out.size(), c_format.c_str(), &local);
  QLLM_CHECK(n > 0, "strftime_now: the formatted date is too long");
  out.resize(n - 1);
  return out;
}

// namespace(...) and dict(...): a mapping argument and keyword arguments.
std::vector<std::pair<Value, Value>> mapping_arguments(const std::string& fn, const CallArgs& args) {
  QLLM_CHECK(args.positional.size() <= 1, "{}() takes at most one positional argument", fn);
  std::vector<std::pair<Value, Value>> out;
  if (!args.positional.empty()) {
    QLLM_CHECK(args.positional[0].is_dict(), "{}(): the positional argument must be a dict", fn);
    out = args.positional[0].as_dict().items;
  }
  for (const auto& [k, v] : args.keyword) out.emplace_back(Value::string(k), v);
  return out;
}

}  // namespace

Value call_global(Budget& budget, const GlobalFunction& function, CallArgs args) {
  budget.step();
  const std::string& name = function.name;
  if (name == "raise_exception") {
    Params p(name, std::move(args), {"?message"});
    fail("raise_exception: {}", to_str(p.required(0)));
  }
  if (name == "strftime_now") {
    Params p(name, std::move(args), {"format"});
    return Value::string(strftime_now(string_arg(p.required(0), "strftime_now format")));
  }
  if (name == "namespace") {
    auto object = std::make_shared<ObjectData>();
    for (auto& [k, v] : mapping_arguments(name, args)) {
      QLLM_CHECK(k.is_string(), "namespace(): attribute names must be strings");
      QLLM_CHECK(!k.as_string().starts_with("_"),
                 "namespace(): underscore-prefixed attribute '{}' is refused (as transformers does)",
                 k.as_string());
      object->set(k.as_string(), std::move(v));
    }
    return Value::object(std::move(object));
  }
  if (name == "dict") {
    DictData dict;
    for (auto& [k, v] : mapping_arguments(name, args)) dict.set(std::move(k), std::move(v));
    return Value::dict(std::move(dict));
  }
  if (name == "range") {
    QLLM_CHECK(args.keyword.empty() && !args.positional.empty() && args.positional.size() <= 3,
               "range() takes 1 to 3 positional arguments");
    const int64_t a = int_arg(args.positional[0], "range argument");
    const int64_t start = args.positional.size() == 1 ? 0 : a;
    const int64_t stop = args.positional.size() == 1 ? a : int_arg(args.positional[1], "range argument");
    const int64_t step = args.positional.size() == 3 ? int_arg(args.positional[2], "range argument") : 1;
    QLLM_CHECK(step != 0, "range() arg 3 must not be zero");
    // The count in unsigned arithmetic: stop - start cannot overflow it when the range is not empty.
    const uint64_t magnitude = step > 0 ? static_cast<uint64_t>(step) : 0 - static_cast<uint64_t>(step);
    uint64_t count = 0;
    if (step > 0 && stop > start)
      count = (static_cast<uint64_t>(stop) - static_cast<uint64_t>(start) - 1) / magnitude + 1;
    if (step < 0 && stop < start)
      count = (static_cast<uint64_t>(start) - static_cast<uint64_t>(stop) - 1) / magnitude + 1;
    QLLM_CHECK(count <= 100000, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    budget.step(count);
    std::vector<Value> items;
    for (uint64_t i = 0; i < count; ++i) {
      items.push_back(Value::integer(
          static_cast<int64_t>(static_cast<uint64_t>(start) + i * static_cast<uint64_t>(step))));
    }
    return Value::list(std::move(items), ListForm::Range);
  }
  fail("the global function {}() is not supported", name);
}

}  // namespace qllm::jinja
