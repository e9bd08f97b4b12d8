// Binding call arguments to a builtin's parameters (see args.h).
#include "jinja/args.h"

#include "qllm/error.h"

namespace qllm::jinja {

Params::Params(std::string function, CallArgs args, std::initializer_list<std::string_view> names)
    : Params(std::move(function), std::move(args), names, false) {}

Params Params::with_extra(std::string function, CallArgs args,
                          std::initializer_list<std::string_view> names) {
  return Params(std::move(function), std::move(args), names, true);
}

Params::Params(std::string function, CallArgs args, std::initializer_list<std::string_view> names,
               bool allow_extra)
    : function_(std::move(function)), values_(names.size()) {
  for (const std::string_view name : names) names_.push_back(name.starts_with('?') ? name.substr(1) : name);
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < names_.size()) {
      values_[i] = std::move(args.positional[i]);
    } else {
      QLLM_CHECK(allow_extra, "{}() takes at most {} positional argument(s) ({} given)", function_,
                 names_.size(), args.positional.size());
      extra_.push_back(std::move(args.positional[i]));
    }
  }
  for (auto& [name, value] : args.keyword) {
    size_t i = 0;
    while (i < names_.size() && names_[i] != name) ++i;
    QLLM_CHECK(i < names_.size(), "{}() got an unexpected keyword argument '{}'", function_, name);
    QLLM_CHECK(!values_[i], "{}() got multiple values for argument '{}'", function_, name);
    values_[i] = std::move(value);
  }
  for (size_t i = 0; i < values_.size(); ++i) {
    QLLM_CHECK(!values_[i] || !values_[i]->is_undefined() || names.begin()[i].starts_with('?'),
               "{}(): argument '{}' is undefined", function_, names_[i]);
  }
}

const Value* Params::get(size_t index) const {
  return values_.at(index) ? &*values_[index] : nullptr;
}

const Value& Params::required(size_t index) const {
  QLLM_CHECK(values_.at(index).has_value(), "{}() missing required argument '{}'", function_, names_[index]);
  return *values_[index];
}

}  // namespace qllm::jinja
