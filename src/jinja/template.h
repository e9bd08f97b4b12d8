// A small Jinja interpreter for Hugging Face chat templates: parse once, render with variables, output
// byte-identical to Python jinja2 as transformers renders chat templates (an ImmutableSandboxedEnvironment
// with trim_blocks, lstrip_blocks and loop controls; its own tojson, raise_exception, strftime_now).
//
// Hand-written because no C++ Jinja engine is packaged by Debian (inja, the nearest, follows its own
// syntax rather than Jinja2's). It covers what chat templates use: if/elif/else, for (with loop
// variables, "if" filters, unpacking, else, break/continue), set (with namespaces and blocks), macros,
// the Python expression subset, and the common filters, tests and str/dict methods. Whatever it does not
// cover is a qllm::Error naming the construct and its line:column, at parse time where Jinja2 also checks
// it then (unknown tags, filters and tests): a template renders as jinja2 renders it or not at all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "jinja/value.h"

namespace qllm::jinja {

// Bounds for untrusted templates: crafted ones must fail with a qllm::Error, not exhaust the stack,
// memory or time.
struct Limits {
  size_t max_nesting = 128;             // nesting of blocks and of expressions in the source
  size_t max_depth = 1000;              // nested evaluation at render time (through macros too)
  size_t max_output_bytes = 16u << 20;  // the output, and every string or list built on the way
  uint64_t max_steps = 10'000'000;      // statements, loop iterations and calls while rendering
};

using Context = std::unordered_map<std::string, Value>;

struct Program;  // the parsed template (parser.h)

class Template {
 public:
  // Throws qllm::Error "<name>:<line>:<column>: ..." for a syntax error or an unsupported construct.
  static Template parse(std::string_view source, std::string name, Limits limits = {});

  // Renders with `context` as the template's variables, over the globals transformers defines (range,
  // namespace, dict, raise_exception, strftime_now). raise_exception("msg") throws a qllm::Error
  // containing msg; so does every runtime error Jinja2 would raise, with the position of the expression.
  std::string render(const Context& context) const;

  const std::string& name() const { return name_; }

 private:
  Template(std::shared_ptr<const Program> program, std::string name, Limits limits)
      : program_(std::move(program)), name_(std::move(name)), limits_(limits) {}
  std::shared_ptr<const Program> program_;
  std::string name_;
  Limits limits_;
};

// A JSON value as a template value (objects keep their order: parse it as ordered_json). Throws for nesting
// deeper than `max_depth` and for invalid UTF-8 in strings.
Value from_json(const nlohmann::ordered_json& json, size_t max_depth = 64);

}  // namespace qllm::jinja
