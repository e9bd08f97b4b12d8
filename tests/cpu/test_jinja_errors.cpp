// The Jinja interpreter's failures: what it does not support, and what Jinja2 itself refuses, is a
// qllm::Error naming the construct and its line:column (at parse time where Jinja2 checks it then), never
// different output; crafted templates (100k-deep nesting, runaway loops and output, deep recursion) end
// in a qllm::Error, not a crash.
#include <gtest/gtest.h>

#include <string>

#include "tests/cpu/jinja_test_support.h"

namespace qllm {
namespace {

using testing::render;
using testing::render_error;

void expect_error(const std::string& source, const std::string& expected, std::string_view context = "{}",
                  jinja::Limits limits = {}) {
  const std::string error = render_error(source, context, limits);
  EXPECT_NE(error.find(expected), std::string::npos)
      << "template: " << source.substr(0, 80) << "\nerror: " << error;
}

std::string repeated(std::string_view part, size_t times) {
  std::string out;
  for (size_t i = 0; i < times; ++i) out += part;
  return out;
}

TEST(JinjaErrors, SyntaxErrorsHavePositions) {
  expect_error("{{ 1 +", "t:1:1: unclosed {{ }} tag");
  expect_error("a\n  {% if x %}", "t:2:11: unexpected end of template, expected 'elif' or 'else' or 'endif'");
  expect_error("{{ 'abc }}", "t:1:4: unclosed string literal");
  expect_error("{# never closed", "t:1:1: unclosed comment");
  expect_error("{{ a ) }}", "t:1:6: unexpected ')'");
  expect_error("{{ a $ b }}", "t:1:6: unexpected character U+0024");
  expect_error("{% foo %}", "t:1:4: unknown tag 'foo'");
  expect_error("{% if %}{% endif %}", "t:1:7: expected an expression, got '%}'");
  expect_error("{% break %}", "t:1:4: 'break' outside of a for loop");
  expect_error("{% set a, = [1] %}", "t:1:11: expected a name, got '='");
  expect_error("{{ dict(a=1, a=2) }}", "t:1:14: keyword argument repeated: a");
  expect_error("{% macro m() %}{% endmacro m %}", "t:1:28: expected '%}', got 'm'");
  expect_error("{{ x|nofilter }}", "t:1:6: no filter named 'nofilter'");
  expect_error("{% if x is nottest %}{% endif %}", "t:1:12: no test named 'nottest'");
  expect_error(std::string("{{ '\xff' }}"), "invalid UTF-8 at byte offset 4");
}

TEST(JinjaErrors, UnsupportedConstructsAreNamed) {
  // At parse time, with the construct and its position.
  expect_error("\n{% include 'other.jinja' %}", "t:2:4: the 'include' tag is not supported");
  expect_error("{% call m() %}{% endcall %}", "t:1:4: the 'call' tag is not supported");
  expect_error("{{ x|xmlattr }}", "t:1:6: the filter 'xmlattr' is not supported");
  expect_error("{{ {'a': 1}|dictsort }}", "the filter 'dictsort' is not supported");
  expect_error("{% for x in y recursive %}{% endfor %}", "t:1:15: recursive for loops are not supported");
  expect_error("{{ f(*args) }}", "*args and **kwargs in calls are not supported");
  expect_error("{{ x[1, 2] }}", "tuple subscripts are not supported");
  expect_error("{{ 0x1F }}", "hexadecimal, octal and binary literals are not supported");
  expect_error("{{ '\\N{BULLET}' }}", "\\N{...} escapes are not supported");
  // At render time, where the value decides.
  expect_error("{{ '%s' % 1 }}", "t:1:9: string formatting with '%' is not supported");
  expect_error("{{ '{}'.format(1) }}", "t:1:15: the string method format() is not supported");
  expect_error("{{ 'Ω'|upper }}", "case mapping of the character U+03A9 is not supported");
  expect_error("{{ 9223372036854775807 + 1 }}", "integer overflow");
  expect_error("{{ x.append(1) }}", "the list method append() is not supported", R"({"x": []})");
  expect_error("{{ x.__class__ }}", "access to the attribute '__class__' is unsafe", R"({"x": "s"})");
  expect_error("{{ (5).real }}", "attributes of int values are not supported");
}

TEST(JinjaErrors, RuntimeErrorsAsJinja2RaisesThem) {
  expect_error("{{ 1 / 0 }}", "t:1:6: division by zero");
  expect_error("{{ 10.0 ** 400 }}", "Numerical result out of range");
  expect_error("{{ 'a'|replace('a', 'b', 1.5) }}", "replace count must be an integer, not float");
  expect_error("{{ x is divisibleby 0 }}", "integer division or modulo by zero", R"({"x": 4})");
  // Undefined values where Python fails on them, and generators used as lists.
  expect_error("{{ 'hello'[1:x] }}", "'x' is undefined");
  expect_error("{{ x|int }}", "'x' is undefined");
  expect_error("{{ 'a'.strip(x) }}", "str.strip(): argument 'chars' is undefined");
  expect_error("{{ [1]|sort(reverse=x) }}", "sort(): argument 'reverse' is undefined");
  expect_error("{{ 'a' is lower 'b' }}", "lower() takes at most 0 positional argument(s) (1 given)");
  expect_error("{{ [1, 2]|select('odd') }}", "printing a generator");
  expect_error("{{ [1, 2]|select('odd')|length }}", "object of type 'generator' has no len()");
  expect_error("{{ [1, 2]|unique|last }}", "'generator' object is not reversible");
  expect_error("{% set g = [1]|map('string') %}{{ g|list }}{{ g|list }}",
               "used a second time is not supported");
  expect_error("{{ x.y }}", "t:1:5: 'x' is undefined");
  expect_error("{{ d.a.b }}", "'dict object' has no attribute 'a'", R"({"d": {}})");
  expect_error("{{ f() }}", "'f' is undefined");
  expect_error("{{ 'a' + 1 }}", "unsupported operand type(s) for +: 'str' and 'int'");
  expect_error("{{ 1 < 'a' }}", "'<' not supported between instances of 'int' and 'str'");
  expect_error("{{ x|tojson }}", "Object of type Undefined is not JSON serializable");
  expect_error("{% for a, b in [1] %}{% endfor %}", "'int' object is not iterable");
  expect_error("{% for a, b in [[1, 2, 3]] %}{% endfor %}", "too many values to unpack (expected 2, got 3)");
  expect_error("{% set x.y = 1 %}", "cannot assign attribute on non-namespace object 'x'", R"({"x": {}})");
  expect_error("{{ range(200000)|length }}", "Range too big");
  expect_error("{{ namespace(_hidden=1) }}", "underscore-prefixed attribute '_hidden' is refused");
  // raise_exception: the template's message, at the call.
  expect_error("\n  {{ raise_exception('Conversation roles must alternate') }}",
               "t:2:21: raise_exception: Conversation roles must alternate");
}

TEST(JinjaErrors, DeepNestingIsAnErrorNotACrash) {
  constexpr size_t kDeep = 100000;
  const char* const kTooDeep = "nested deeper than";
  expect_error("{{ " + repeated("(", kDeep) + "1" + repeated(")", kDeep) + " }}", kTooDeep);
  expect_error("{{ " + repeated("[", kDeep) + repeated("]", kDeep) + " }}", kTooDeep);
  expect_error("{{ " + repeated("{'a': ", kDeep) + "1" + repeated("}", kDeep) + " }}", kTooDeep);
  expect_error("{{ " + repeated("not ", kDeep) + "x }}", kTooDeep);
  expect_error("{{ " + repeated("- ", kDeep) + "1 }}", kTooDeep);
  expect_error("{{ 1" + repeated(" + 1", kDeep) + " }}", kTooDeep);
  expect_error("{{ x" + repeated("|trim", kDeep) + " }}", kTooDeep);
  expect_error("{{ x" + repeated(".a", kDeep) + " }}", kTooDeep);
  expect_error("{{ x" + repeated("()", kDeep) + " }}", kTooDeep);
  expect_error(repeated("{% if true %}", kDeep) + repeated("{% endif %}", kDeep), kTooDeep);
  expect_error(repeated("{% for x in y %}", kDeep) + repeated("{% endfor %}", kDeep), kTooDeep);
  // Within the limits, nesting works.
  EXPECT_EQ(render("{{ " + repeated("(", 50) + "1" + repeated(")", 50) + " }}"), "1");
  EXPECT_EQ(render(repeated("{% if true %}", 50) + "x" + repeated("{% endif %}", 50)), "x");
  // Recursion through macros, and values nested through a namespace, are bounded too.
  expect_error("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
               "evaluation nested deeper than 1000 levels");
  expect_error("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}",
               "lists and dicts nested deeper than 128 levels");
  expect_error("{% set ns = namespace() %}{% set ns.self = ns %}", "storing a Namespace object");
}

TEST(JinjaErrors, OutputAndWorkAreBounded) {
  jinja::Limits small;
  small.max_output_bytes = 1000;
  small.max_steps = 10000;
  expect_error("{% for i in range(2000) %}x{% endfor %}", "would exceed 1000 bytes", "{}", small);
  expect_error("{{ 'x' * 5000 }}", "a repeated string would exceed 1000 bytes", "{}", small);
  expect_error("{{ 'x' * 10000000000 }}", "a repeated string would exceed");
  expect_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
               "rendering took more than 10000 steps", "{}", small);
  expect_error("{{ 'ab'|replace('', 'x' * 600) }}", "the result exceeds 1000 bytes", "{}", small);
  EXPECT_EQ(render("{% for i in range(100) %}x{% endfor %}", "{}", small), std::string(100, 'x'));
}

}  // namespace
}  // namespace qllm
