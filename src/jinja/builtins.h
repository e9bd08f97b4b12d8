// What a chat template can call: Jinja2's filters and tests, Python's str / dict / list methods, the
// globals transformers defines, and attribute / item lookup with Jinja2's sandboxed getattr / getitem
// rules. Errors are qllm::Error without a position; the evaluator prefixes the expression's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "jinja/template.h"
#include "jinja/value.h"

namespace qllm::jinja {

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Limits and step counting shared by the evaluator and the builtins.
class Budget {
 public:
  explicit Budget(const Limits& limits) : limits_(limits) {}
  const Limits& limits() const { return limits_; }
  void step(uint64_t count = 1);        // more statements, iterations, calls or items made
  void check_size(size_t bytes) const;  // a string or list about to be built
 private:
  const Limits& limits_;
  uint64_t steps_ = 0;
};

// A method bound to its receiver ("abc".upper, d.items, loop.cycle), callable later.
class BoundMethod : public Callable {
 public:
  BoundMethod(Value receiver, std::string name) : receiver(std::move(receiver)), name(std::move(name)) {}
  std::string describe() const override;
  Value receiver;
  std::string name;
};

// range, namespace, dict, raise_exception, strftime_now.
class GlobalFunction : public Callable {
 public:
  explicit GlobalFunction(std::string name) : name(std::move(name)) {}
  std::string describe() const override { return "function '" + name + "'"; }
  std::string name;
};

// Whether Jinja2 (with transformers' additions) has the filter / test, and whether qllm implements it;
// the parser refuses the others with unsupported_*_message: "no filter named ..." or "... not supported".
bool jinja_has_filter(std::string_view name);
bool jinja_has_test(std::string_view name);
bool filter_supported(std::string_view name);
bool test_supported(std::string_view name);
std::string unsupported_filter_message(std::string_view name);
std::string unsupported_test_message(std::string_view name);

Value apply_filter(Budget& budget, std::string_view name, const Value& subject, CallArgs args);
bool apply_test(Budget& budget, std::string_view name, const Value& subject, CallArgs args);
Value call_method(Budget& budget, const BoundMethod& method, CallArgs args);
Value call_global(Budget& budget, const GlobalFunction& function, CallArgs args);

// obj.name and obj[key] as Jinja2's sandbox resolves them: dict keys, methods of str / dict / list
// (bound), namespace and loop attributes; an undefined value (with Jinja2's message) when absent. Using
// an attribute or item of an undefined value, or a name starting with "_", throws.
Value get_attribute(const Value& object, std::string_view name);
Value get_item(const Value& object, const Value& key);
// object[start:stop:step] for strings and sequences (absent parts: none).
Value get_slice(Budget& budget, const Value& object, const Value& start, const Value& stop,
                const Value& step);

// Python's json.dumps as transformers' tojson calls it.
struct JsonOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // the indent string; nullopt: one line
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
std::string to_json(const Value& value, const JsonOptions& options, size_t max_bytes);

// Python's `needle in haystack` (substring, element or key); false for an undefined haystack.
bool contains(const Value& haystack, const Value& needle);

// Python's iteration: a string's characters, a sequence's items, a dict's keys, nothing for undefined.
std::vector<Value> iterate(const Value& value);

}  // namespace qllm::jinja
