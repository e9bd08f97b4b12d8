// Jinja2's builtin filters and tests as the chat-template interpreter implements them (see builtins.h),
// with transformers' own `tojson`. Filters and tests Jinja2 has but qllm does not are named at parse time.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "jinja/args.h"
#include "jinja/builtins.h"
#include "jinja/text.h"
#include "qllm/error.h"

namespace qllm::jinja {

namespace {

constexpr std::string_view kFilters[] = {
    "abs",  "attr",   "capitalize", "count",   "d",       "default", "first",  "float",  "indent",
    "int",  "items",  "join",       "last",    "length",  "list",    "lower",  "map",    "max",
    "min",  "reject", "rejectattr", "replace", "reverse", "round",   "safe",   "select", "selectattr",
    "sort", "string", "sum",        "title",   "tojson",  "trim",    "unique", "upper"};
constexpr std::string_view kUnsupportedFilters[] = {
    "batch",     "center",  "dictsort",  "e",        "escape", "filesizeformat", "forceescape",
    "format",    "groupby", "pprint",    "random",   "slice",  "striptags",      "truncate",
    "urlencode", "urlize",  "wordcount", "wordwrap", "xmlattr"};
constexpr std::string_view kTests[] = {
    "boolean",  "callable", "defined",  "divisibleby", "eq",        "equalto", "==",          "even",
    "false",    "filter",   "float",    "ge",          ">=",        "gt",      "greaterthan", ">",
    "in",       "integer",  "iterable", "le",          "<=",        "lower",   "lt",          "lessthan",
    "<",        "mapping",  "ne",       "!=",          "none",      "number",  "odd",         "sameas",
    "sequence", "string",   "test",     "true",        "undefined", "upper"};
constexpr std::string_view kUnsupportedTests[] = {"escaped"};

int64_t integer_arg(const Value& v, std::string_view what) {
  QLLM_CHECK(v.kind() == Kind::Int || v.kind() == Kind::Bool, "{} must be an integer, not {}", what,
             type_name(v));
  return v.as_int();
}

int64_t length(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined:
      return 0;
    case Kind::String:
      return static_cast<int64_t>(text::code_point_count(v.as_string()));
    case Kind::List:
      QLLM_CHECK(v.as_list().form != ListForm::Generator, "object of type 'generator' has no len()");
      return static_cast<int64_t>(v.as_list().items.size());
    case Kind::Dict:
      return static_cast<int64_t>(v.as_dict().items.size());
    default:
      fail("object of type '{}' has no len()", type_name(v));
  }
}

// Python's float(str): optional whitespace and sign, digits with single underscores, a fraction, an
// exponent; or inf / infinity / nan in any case.
std::optional<double> parse_python_float(std::string_view s) {
  std::string t = text::strip(s, std::nullopt, true, true);
  std::string plain;
  size_t i = 0;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) plain += t[i++];
  std::string word;
  for (size_t j = i; j < t.size(); ++j)
    word += static_cast<char>(std::tolower(static_cast<unsigned char>(t[j])));
  if (word == "inf" || word == "infinity") return plain == "-" ? -INFINITY : INFINITY;
  if (word == "nan") return NAN;
  auto digits = [&](bool& any) {
    while (i < t.size()) {
      if (std::isdigit(static_cast<unsigned char>(t[i]))) {
        plain += t[i++];
        any = true;
      } else if (t[i] == '_' && any && i + 1 < t.size() &&
                 std::isdigit(static_cast<unsigned char>(t[i + 1]))) {
        ++i;
      } else {
        break;
      }
    }
  };
  bool mantissa = false;
  digits(mantissa);
  if (i < t.size() && t[i] == '.') {
    plain += t[i++];
    bool fraction = false;
    digits(fraction);
    mantissa = mantissa || fraction;
  }
  if (!mantissa) return std::nullopt;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    plain += t[i++];
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) plain += t[i++];
    bool exponent = false;
    digits(exponent);
    if (!exponent) return std::nullopt;
  }
  if (i != t.size()) return std::nullopt;
  return std::strtod(plain.c_str(), nullptr);
}

// Python's int(str) in base 10: optional whitespace and sign, digits with single underscores.
std::optional<int64_t> parse_python_int(std::string_view s) {
  const std::string t = text::strip(s, std::nullopt, true, true);
  size_t i = 0;
  const bool negative = i < t.size() && t[i] == '-';
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
  if (i == t.size()) return std::nullopt;
  uint64_t magnitude = 0;
  for (; i < t.size(); ++i) {
    if (t[i] == '_' && i > 0 && std::isdigit(static_cast<unsigned char>(t[i - 1])) && i + 1 < t.size() &&
        std::isdigit(static_cast<unsigned char>(t[i + 1]))) {
      continue;
    }
    if (!std::isdigit(static_cast<unsigned char>(t[i]))) return std::nullopt;
    QLLM_CHECK(!__builtin_mul_overflow(magnitude, 10u, &magnitude) &&
                   !__builtin_add_overflow(magnitude, static_cast<uint64_t>(t[i] - '0'), &magnitude),
               "int: the number {} is too large", t);
  }
  const uint64_t limit = negative ? static_cast<uint64_t>(INT64_MAX) + 1 : static_cast<uint64_t>(INT64_MAX);
  QLLM_CHECK(magnitude <= limit, "int: the number {} is too large", t);
  const int64_t value = negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
  return value;
}

std::optional<int64_t> float_to_int(double d) {
  if (!std::isfinite(d)) return std::nullopt;
  QLLM_CHECK(std::fabs(d) < 9.2e18, "int: the number {} is too large", float_repr(d));
  return static_cast<int64_t>(d);  // truncates toward zero, as Python's int(float) does
}

Value int_filter(const Value& v, const Value& fallback) {
  switch (v.kind()) {
    case Kind::Undefined:
      fail("{}", v.undefined_message());  // Undefined.__int__ raises
    case Kind::Int:
    case Kind::Bool:
      return Value::integer(v.as_int());
    case Kind::Float:
      if (auto i = float_to_int(v.as_float())) return Value::integer(*i);
      return fallback;
    case Kind::String:
      if (auto i = parse_python_int(v.as_string())) return Value::integer(*i);
      if (auto d = parse_python_float(v.as_string())) {
        if (auto i = float_to_int(*d)) return Value::integer(*i);
      }
      return fallback;
    default:
      return fallback;
  }
}

Value float_filter(const Value& v, const Value& fallback) {
  if (v.is_undefined()) fail("{}", v.undefined_message());  // Undefined.__float__ raises
  if (v.is_number()) return Value::number(v.as_float());
  if (v.is_string()) {
    if (auto d = parse_python_float(v.as_string())) return Value::number(*d);
  }
  return fallback;
}

Value round_filter(const Value& v, int64_t precision, const std::string& method) {
  QLLM_CHECK(v.is_number(), "round: a number is required, not {}", type_name(v));
  QLLM_CHECK(precision >= 0 && precision <= 15, "round: precision {} is not supported (0 to 15)", precision);
  if (method == "common") {
    if (v.kind() != Kind::Float) return Value::integer(v.as_int());
    // Python's round(x, n): the exact binary value rounded half to even, as glibc's printf rounds it.
    const double d = v.as_float();
    if (!std::isfinite(d)) return v;
    char buffer[400];
    std::snprintf(buffer, sizeof buffer, "%.*f", static_cast<int>(precision), d);
    return Value::number(std::strtod(buffer, nullptr));
  }
  QLLM_CHECK(method == "ceil" || method == "floor", "round: method must be 'common', 'ceil' or 'floor'");
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double scaled = v.as_float() * scale;
  return Value::number((method == "ceil" ? std::ceil(scaled) : std::floor(scaled)) / scale);
}

std::string indent_filter(std::string s, const Value& width, bool first, bool blank) {
  const std::string indention =
      width.is_string() ? width.as_string()
                        : std::string(static_cast<size_t>(std::clamp<int64_t>(width.as_int(), 0, 1000)), ' ');
  s += "\n";  // Jinja's quirk for splitlines
  std::vector<std::string> lines = text::splitlines(s, false);
  std::string out;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) out += (i > 0 ? "\n" + indention : "") + lines[i];
  } else {
    out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) out += "\n" + (lines[i].empty() ? "" : indention + lines[i]);
  }
  return first ? indention + out : out;
}

// The key a sort / min / max / unique compares: the item or its attribute, lowercased for strings
// unless case-sensitive.
Value sort_key(const Value& item, const Value* attribute, bool case_sensitive) {
  Value key = item;
  if (attribute != nullptr && !attribute->is_none()) {
    for (const std::string& part : text::split(to_str(*attribute), std::string("."), -1, false)) {
      key = get_item(key, Value::string(part));
    }
  }
  if (!case_sensitive && key.is_string()) return Value::string(text::lower(key.as_string()));
  return key;
}

std::vector<Value> sorted(const Value& value, const Value* attribute, bool case_sensitive, bool reverse) {
  std::vector<Value> items = iterate(value);
  std::vector<std::pair<Value, size_t>> keyed;
  for (size_t i = 0; i < items.size(); ++i)
    keyed.emplace_back(sort_key(items[i], attribute, case_sensitive), i);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? compare(b.first, a.first, "<") < 0 : compare(a.first, b.first, "<") < 0;
  });
  std::vector<Value> out;
  for (const auto& [key, index] : keyed) out.push_back(items[index]);
  return out;
}

// The attribute path "a.b" of an item, as Jinja2's make_attrgetter resolves it.
Value attribute_of(const Value& item, const std::string& path, const Value* fallback) {
  Value v = item;
  for (const std::string& part : text::split(path, std::string("."), -1, false)) {
    const auto index = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)
                           ? std::optional<int64_t>(std::stoll(part))
                           : std::nullopt;
    v = get_item(v, index ? Value::integer(*index) : Value::string(part));
  }
  if (v.is_undefined() && fallback != nullptr) return *fallback;
  return v;
}

CallArgs rest_args(const Params& p) {
  return CallArgs{p.extra(), {}};
}

Value select_filter(Budget& budget, std::string_view name, const Value& seq, CallArgs args) {
  const bool by_attribute = name == "selectattr" || name == "rejectattr";
  const bool keep = name == "select" || name == "selectattr";
  Params p = Params::with_extra(std::string(name), std::move(args),
                                by_attribute ? std::initializer_list<std::string_view>{"attr", "test"}
                                             : std::initializer_list<std::string_view>{"test"});
  const size_t test_index = by_attribute ? 1 : 0;
  std::vector<Value> out;
  for (const Value& item : iterate(seq)) {
    budget.step();
    const Value subject = by_attribute ? attribute_of(item, to_str(p.required(0)), nullptr) : item;
    const bool passed = p.get(test_index) != nullptr
                            ? apply_test(budget, to_str(*p.get(test_index)), subject, rest_args(p))
                            : subject.truthy();
    if (passed == keep) out.push_back(item);
  }
  return Value::list(std::move(out), ListForm::Generator);
}

Value map_filter(Budget& budget, const Value& seq, CallArgs args) {
  std::vector<Value> out;
  const bool by_attribute = std::any_of(args.keyword.begin(), args.keyword.end(),
                                        [](const auto& kw) { return kw.first == "attribute"; });
  if (by_attribute) {
    Params p("map", std::move(args), {"attribute", "?default"});
    for (const Value& item : iterate(seq)) {
      budget.step();
      out.push_back(attribute_of(item, to_str(p.required(0)), p.get(1)));
    }
    return Value::list(std::move(out), ListForm::Generator);
  }
  QLLM_CHECK(!args.positional.empty() && args.positional[0].is_string(),
             "map: a filter name or attribute= is required");
  const std::string filter = args.positional[0].as_string();
  QLLM_CHECK(filter_supported(filter), "map: {}", unsupported_filter_message(filter));
  args.positional.erase(args.positional.begin());
  for (const Value& item : iterate(seq)) out.push_back(apply_filter(budget, filter, item, args));
  return Value::list(std::move(out), ListForm::Generator);
}

Value tojson_filter(Budget& budget, const Value& value, CallArgs args) {
  // transformers: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
  Params p("tojson", std::move(args), {"?ensure_ascii", "indent", "separators", "?sort_keys"});
  JsonOptions options;
  options.ensure_ascii = p.get(0) != nullptr && p.get(0)->truthy();
  if (const Value* indent = p.get(1); indent != nullptr && !indent->is_none()) {
    if (indent->is_string()) {
      options.indent = indent->as_string();
    } else {
      QLLM_CHECK(indent->kind() == Kind::Int || indent->kind() == Kind::Bool,
                 "tojson: indent must be an int or str");
      options.indent = std::string(static_cast<size_t>(std::clamp<int64_t>(indent->as_int(), 0, 1000)), ' ');
    }
    options.item_separator = ",";
  }
  if (const Value* separators = p.get(2); separators != nullptr && !separators->is_none()) {
    QLLM_CHECK(separators->is_list() && separators->as_list().items.size() == 2 &&
                   separators->as_list().items[0].is_string() && separators->as_list().items[1].is_string(),
               "tojson: separators must be a pair of strings");
    options.item_separator = separators->as_list().items[0].as_string();
    options.key_separator = separators->as_list().items[1].as_string();
  }
  options.sort_keys = p.get(3) != nullptr && p.get(3)->truthy();
  return Value::string(to_json(value, options, budget.limits().max_output_bytes));
}

std::string join_filter(Budget& budget, const Value& value, CallArgs args) {
  Params p("join", std::move(args), {"?d", "attribute"});
  const std::string separator = p.get(0) != nullptr ? to_str(*p.get(0)) : "";
  std::string out;
  bool first = true;
  for (const Value& item : iterate(value)) {
    if (!first) out += separator;
    first = false;
    out += to_str(p.get(1) != nullptr ? attribute_of(item, to_str(*p.get(1)), nullptr) : item);
    budget.check_size(out.size());
  }
  return out;
}

Value min_max(const Value& value, CallArgs args, bool max) {
  Params p(max ? "max" : "min", std::move(args), {"?case_sensitive", "attribute"});
  const std::vector<Value> items = iterate(value);
  if (items.empty()) return Value::undefined(fmt::format("No aggregated item, sequence was empty."));
  const bool case_sensitive = p.get(0) != nullptr && p.get(0)->truthy();
  size_t best = 0;
  Value best_key = sort_key(items[0], p.get(1), case_sensitive);
  for (size_t i = 1; i < items.size(); ++i) {
    Value key = sort_key(items[i], p.get(1), case_sensitive);
    const int c = compare(key, best_key, max ? ">" : "<");
    if (max ? c > 0 : c < 0) {
      best = i;
      best_key = std::move(key);
    }
  }
  return items[best];
}

Value sum_filter(const Value& value, CallArgs args) {
  Params p("sum", std::move(args), {"attribute", "start"});
  Value total = p.get(1) != nullptr ? *p.get(1) : Value::integer(0);
  for (const Value& item : iterate(value)) {
    const Value term = p.get(0) != nullptr ? attribute_of(item, to_str(*p.get(0)), nullptr) : item;
    QLLM_CHECK(total.is_number() && term.is_number(), "sum: unsupported operand types '{}' and '{}'",
               type_name(total), type_name(term));
    if (total.kind() == Kind::Float || term.kind() == Kind::Float) {
      total = Value::number(total.as_float() + term.as_float());
    } else {
      int64_t r = 0;
      QLLM_CHECK(!__builtin_add_overflow(total.as_int(), term.as_int(), &r), "sum: integer overflow");
      total = Value::integer(r);
    }
  }
  return total;
}

Value unique_filter(const Value& value, CallArgs args) {
  Params p("unique", std::move(args), {"?case_sensitive", "attribute"});
  const bool case_sensitive = p.get(0) != nullptr && p.get(0)->truthy();
  std::vector<Value> out;
  std::vector<Value> seen;
  for (const Value& item : iterate(value)) {
    Value key = sort_key(item, p.get(1), case_sensitive);
    check_hashable(key);
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equal(s, key); })) {
      seen.push_back(std::move(key));
      out.push_back(item);
    }
  }
  return Value::list(std::move(out), ListForm::Generator);
}

Value reverse_filter(const Value& value) {
  if (value.is_string()) {
    std::vector<Value> chars = iterate(value);
    std::string out;
    for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += it->as_string();
    return Value::string(std::move(out));
  }
  QLLM_CHECK(!(value.is_list() && value.as_list().form == ListForm::Generator),
             "'generator' object is not reversible");
  std::vector<Value> items = iterate(value);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items), ListForm::Generator);  // Python's reversed() iterator
}

}  // namespace

bool jinja_has_filter(std::string_view name) {
  return listed(kFilters, name) || listed(kUnsupportedFilters, name);
}
bool jinja_has_test(std::string_view name) {
  return listed(kTests, name) || listed(kUnsupportedTests, name);
}
bool filter_supported(std::string_view name) {
  return listed(kFilters, name);
}
bool test_supported(std::string_view name) {
  return listed(kTests, name);
}

std::string unsupported_filter_message(std::string_view name) {
  return listed(kUnsupportedFilters, name) ? fmt::format("the filter '{}' is not supported", name)
                                           : fmt::format("no filter named '{}'", name);
}
std::string unsupported_test_message(std::string_view name) {
  return listed(kUnsupportedTests, name) ? fmt::format("the test '{}' is not supported", name)
                                         : fmt::format("no test named '{}'", name);
}

Value apply_filter(Budget& budget, std::string_view name, const Value& v, CallArgs args) {
  budget.step();
  const std::string fn(name);
  QLLM_CHECK(filter_supported(name), "{}", unsupported_filter_message(name));
  if (name == "length" || name == "count") {
    Params p(fn, std::move(args), {});
    return Value::integer(length(v));
  }
  if (name == "default" || name == "d") {
    Params p(fn, std::move(args), {"?default_value", "?boolean"});
    const bool use_default = v.is_undefined() || (p.get(1) != nullptr && p.get(1)->truthy() && !v.truthy());
    if (!use_default) return v;
    return p.get(0) != nullptr ? *p.get(0) : Value::string("");
  }
  if (name == "trim") {
    Params p(fn, std::move(args), {"chars"});
    const Value* chars = p.get(0);
    return Value::string(text::strip(
        to_str(v), chars != nullptr && !chars->is_none() ? std::optional(to_str(*chars)) : std::nullopt, true,
        true));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" || name == "string" ||
      name == "safe") {
    Params p(fn, std::move(args), {});
    const std::string s = to_str(v);
    return Value::string(name == "upper"        ? text::upper(s)
                         : name == "lower"      ? text::lower(s)
                         : name == "title"      ? text::jinja_title(s)
                         : name == "capitalize" ? text::capitalize(s)
                                                : s);
  }
  if (name == "replace") {
    Params p(fn, std::move(args), {"?old", "?new", "count"});
    const int64_t count =
        p.get(2) != nullptr && !p.get(2)->is_none() ? integer_arg(*p.get(2), "replace count") : -1;
    return Value::string(text::replace(to_str(v), to_str(p.required(0)), to_str(p.required(1)), count,
                                       budget.limits().max_output_bytes));
  }
  if (name == "tojson") return tojson_filter(budget, v, std::move(args));
  if (name == "join") return Value::string(join_filter(budget, v, std::move(args)));
  if (name == "first" || name == "last") {
    Params p(fn, std::move(args), {});
    QLLM_CHECK(name == "first" || !(v.is_list() && v.as_list().form == ListForm::Generator),
               "'generator' object is not reversible");
    const std::vector<Value> items = iterate(v);
    if (items.empty()) return Value::undefined(fmt::format("No {} item, sequence was empty.", name));
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") {
    Params p(fn, std::move(args), {});
    return Value::list(iterate(v));
  }
  if (name == "items") {
    Params p(fn, std::move(args), {});
    if (v.is_undefined()) return Value::list({}, ListForm::Generator);
    QLLM_CHECK(v.is_dict(), "Can only get item pairs from a mapping.");
    std::vector<Value> out;
    for (const auto& [k, item] : v.as_dict().items) out.push_back(Value::list({k, item}, ListForm::Tuple));
    return Value::list(std::move(out), ListForm::Generator);
  }
  if (name == "int") {
    Params p(fn, std::move(args), {"?default", "base"});
    QLLM_CHECK(p.get(1) == nullptr || (p.get(1)->kind() == Kind::Int && p.get(1)->as_int() == 10),
               "int: only base 10 is supported");
    return int_filter(v, p.get(0) != nullptr ? *p.get(0) : Value::integer(0));
  }
  if (name == "float") {
    Params p(fn, std::move(args), {"?default"});
    return float_filter(v, p.get(0) != nullptr ? *p.get(0) : Value::number(0.0));
  }
  if (name == "abs") {
    Params p(fn, std::move(args), {});
    QLLM_CHECK(v.is_number(), "bad operand type for abs(): '{}'", type_name(v));
    if (v.kind() == Kind::Float) return Value::number(std::fabs(v.as_float()));
    QLLM_CHECK(v.as_int() != INT64_MIN, "abs: integer overflow");
    return Value::integer(std::llabs(v.as_int()));
  }
  if (name == "round") {
    Params p(fn, std::move(args), {"precision", "method"});
    const int64_t precision = p.get(0) != nullptr ? integer_arg(*p.get(0), "round precision") : 0;
    return round_filter(v, precision, p.get(1) != nullptr ? to_str(*p.get(1)) : "common");
  }
  if (name == "indent") {
    Params p(fn, std::move(args), {"width", "?first", "?blank"});
    if (v.is_undefined()) fail("{}", v.undefined_message());
    QLLM_CHECK(v.is_string(), "indent: a string is required, not {}", type_name(v));
    const Value width = p.get(0) != nullptr ? *p.get(0) : Value::integer(4);
    QLLM_CHECK(width.is_string() || width.kind() == Kind::Int, "indent: width must be an int or a string");
    return Value::string(indent_filter(to_str(v), width, p.get(1) != nullptr && p.get(1)->truthy(),
                                       p.get(2) != nullptr && p.get(2)->truthy()));
  }
  if (name == "attr") {
    Params p(fn, std::move(args), {"name"});
    return get_attribute(v, to_str(p.required(0)));
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    return select_filter(budget, name, v, std::move(args));
  }
  if (name == "map") return map_filter(budget, v, std::move(args));
  if (name == "sort") {
    Params p(fn, std::move(args), {"reverse", "?case_sensitive", "attribute"});
    return Value::list(sorted(v, p.get(2), p.get(1) != nullptr && p.get(1)->truthy(),
                              p.get(0) != nullptr && p.get(0)->truthy()));
  }
  if (name == "min" || name == "max") return min_max(v, std::move(args), name == "max");
  if (name == "sum") return sum_filter(v, std::move(args));
  if (name == "unique") return unique_filter(v, std::move(args));
  if (name == "reverse") {
    Params p(fn, std::move(args), {});
    return reverse_filter(v);
  }
  fail("{}", unsupported_filter_message(name));
}

bool apply_test(Budget& budget, std::string_view name, const Value& v, CallArgs args) {
  budget.step();
  const std::string fn(name);
  QLLM_CHECK(test_supported(name), "{}", unsupported_test_message(name));
  if (name == "defined" || name == "undefined") {
    Params p(fn, std::move(args), {});
    return v.is_undefined() == (name == "undefined");
  }
  static constexpr std::string_view kWithArgument[] = {
      "divisibleby", "eq", "equalto", "==",          "ne", "!=", "lt", "lessthan", "<",
      "le",          "<=", "gt",      "greaterthan", ">",  "ge", ">=", "in",       "sameas"};
  Params p(fn, std::move(args),
           listed(kWithArgument, name) ? std::initializer_list<std::string_view>{"?other"}
                                       : std::initializer_list<std::string_view>{});
  const Kind k = v.kind();
  if (name == "none") return k == Kind::None;
  if (name == "boolean") return k == Kind::Bool;
  if (name == "true") return k == Kind::Bool && v.as_bool();
  if (name == "false") return k == Kind::Bool && !v.as_bool();
  if (name == "integer") return k == Kind::Int;
  if (name == "float") return k == Kind::Float;
  if (name == "number") return v.is_number();
  if (name == "string") return k == Kind::String;
  if (name == "mapping") return k == Kind::Dict;
  if (name == "callable") return k == Kind::Callable || k == Kind::Undefined;  // Undefined has __call__
  if (name == "iterable")
    return k == Kind::String || k == Kind::List || k == Kind::Dict || k == Kind::Undefined;
  if (name == "sequence") {
    // Python: len() and __getitem__ (dict views have no __getitem__; Undefined has both).
    const bool view = k == Kind::List &&
                      (v.as_list().form == ListForm::DictItems || v.as_list().form == ListForm::DictKeys ||
                       v.as_list().form == ListForm::DictValues);
    return (k == Kind::String || k == Kind::List || k == Kind::Dict || k == Kind::Undefined) && !view;
  }
  if (name == "lower" || name == "upper") {
    const std::string s = to_str(v);
    return name == "lower" ? text::is_lower(s) : text::is_upper(s);
  }
  if (name == "even" || name == "odd" || name == "divisibleby") {
    QLLM_CHECK(v.is_number(), "the test '{}' needs a number, not {}", name, type_name(v));
    const Value divisor = name == "divisibleby" ? p.required(0) : Value::integer(2);
    QLLM_CHECK(divisor.is_number(), "divisibleby: the divisor must be a number");
    QLLM_CHECK(divisor.as_float() != 0.0, "integer division or modulo by zero");
    const double remainder = k == Kind::Float || divisor.kind() == Kind::Float
                                 ? std::fmod(v.as_float(), divisor.as_float())
                             : divisor.as_int() == -1 ? 0.0  // INT64_MIN % -1 would trap
                                                      : static_cast<double>(v.as_int() % divisor.as_int());
    // Jinja2: value % 2 == 1 (odd), value % 2 == 0 (even), value % num == 0; Python's % takes the divisor's
    // sign, which fmod and % do not.
    const double mod = remainder != 0.0 && ((remainder < 0) != (divisor.as_float() < 0))
                           ? remainder + divisor.as_float()
                           : remainder;
    return name == "odd" ? mod == 1.0 : mod == 0.0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return equal(v, p.required(0));
  if (name == "ne" || name == "!=") return !equal(v, p.required(0));
  if (name == "lt" || name == "lessthan" || name == "<") return compare(v, p.required(0), "<") < 0;
  if (name == "le" || name == "<=") return compare(v, p.required(0), "<=") <= 0;
  if (name == "gt" || name == "greaterthan" || name == ">") return compare(v, p.required(0), ">") > 0;
  if (name == "ge" || name == ">=") return compare(v, p.required(0), ">=") >= 0;
  if (name == "in") return contains(p.required(0), v);
  if (name == "filter") return jinja_has_filter(to_str(v));
  if (name == "test") return jinja_has_test(to_str(v));
  if (name == "sameas") {
    const Value& other = p.required(0);
    QLLM_CHECK(k == Kind::None || k == Kind::Bool || k == Kind::Undefined,
               "'sameas' is supported for none and booleans only");
    return k != Kind::Undefined && other.kind() == k && equal(v, other);  // each Undefined is a new object
  }
  fail("{}", unsupported_test_message(name));
}

}  // namespace qllm::jinja
