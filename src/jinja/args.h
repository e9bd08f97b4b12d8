// Binding call arguments to a builtin's parameters, as Python binds them: positionally, then by keyword;
// too many arguments, unknown keywords and missing required ones are qllm::Errors naming the function.
// Also the lookup in the builtins' name tables.
#pragma once

#include <algorithm>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jinja/builtins.h"

namespace qllm::jinja {

// Whether `name` is one of `names` (the builtins' tables of names).
template <size_t N>
bool listed(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

class Params {
 public:
  // `names`: the parameters in order. An undefined argument is refused (Python would fail on it) unless
  // its parameter's name starts with '?' (those that Python only tests for truth or turns into "").
  Params(std::string function, CallArgs args, std::initializer_list<std::string_view> names);
  // The argument for parameter `index`, or nullptr when not given.
  const Value* get(size_t index) const;
  const Value& required(size_t index) const;
  // Positional arguments past the named parameters (for functions taking *args); empty unless
  // constructed with with_extra().
  const std::vector<Value>& extra() const { return extra_; }

  static Params with_extra(std::string function, CallArgs args,
                           std::initializer_list<std::string_view> names);

 private:
  Params(std::string function, CallArgs args, std::initializer_list<std::string_view> names,
         bool allow_extra);
  std::string function_;
  std::vector<std::string_view> names_;
  std::vector<std::optional<Value>> values_;
  std::vector<Value> extra_;
};

}  // namespace qllm::jinja
