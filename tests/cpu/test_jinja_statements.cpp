// The Jinja interpreter's statements and whitespace rules, each checked against Python jinja2 in
// transformers' environment (trim_blocks, lstrip_blocks, loop controls; the expected strings are jinja2
// 3.1.6's output): whitespace control, comments and raw blocks, for loops and their loop variable,
// scoping of set, namespaces, block set and macros.
#include <gtest/gtest.h>

#include "tests/cpu/jinja_test_support.h"

namespace qllm {
namespace {

using testing::render;

TEST(JinjaStatements, WhitespaceControl) {
  EXPECT_EQ(render("  {% if true %}\n  yes\n  {% endif %}\n  {{ 'v' }}  {% if true %}x{% endif %}"),
            "  yes\n  v  x");
  EXPECT_EQ(render("a   {%- if true -%}   b   {%- endif -%}   c"), "abc");
  EXPECT_EQ(render("{# comment #}\nx\n{#- c2 -#}\n  y\n  {# c3 #}\nz"), "xy\nz");
  EXPECT_EQ(render("line1\n    {%+ if true %}kept{% endif %}\n    {% if true +%}\nno trim{% endif %}"),
            "line1\n    kept\nno trim");
  EXPECT_EQ(render("{% raw %}{{ not parsed }}{% endraw %} after"), "{{ not parsed }} after");
  EXPECT_EQ(render("{%- raw -%}  a {{ b }}  {%- endraw -%}   after"), "a {{ b }}after");
  EXPECT_EQ(render("{{ 'a' }}\n{{ 'b' }}\n"), "a\nb");
  EXPECT_EQ(render("x\r\ny\rz\n\n"), "x\ny\nz\n");
  EXPECT_EQ(render("{%- for m in messages %}\n    {{- m.role }}\n{%- endfor %}\n",
                   R"({"messages": [{"role": "a"}, {"role": "b"}]})"),
            "ab");
  EXPECT_EQ(render("\t{% if true %}　{% endif %}|{{- '  x' }}"), "　|  x");
}

TEST(JinjaStatements, Loops) {
  EXPECT_EQ(render("{% for i in range(5) %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ "
                   "loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}"),
            "1054TrueFalse5|2143FalseFalse5|3232FalseFalse5|4321FalseFalse5|5410FalseTrue5|");
  EXPECT_EQ(render("{% for i in [1, 2, 3, 4, 5] if i is odd %}{{ i }}:{{ loop.length }}{{ loop.previtem }}{{ "
                   "loop.nextitem }},{% else %}none{% endfor %}"),
            "1:33,3:315,5:33,");
  EXPECT_EQ(render("{% for i in [] %}x{% else %}empty{% endfor %}{% for i in x %}y{% else %}undefined is "
                   "empty{% endfor %}"),
            "emptyundefined is empty");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}{% for (a, b) in "
                   "[[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}{% for k in {'x': 1, 'y': 2} %}{{ k }}{% "
                   "endfor %}{% for c in 'hé' %}[{{ c }}]{% endfor %}"),
            "a=1;b=2;37xy[h][é]");
  EXPECT_EQ(render("{% for i in range(10) %}{% if i == 3 %}{% continue %}{% endif %}{% if i == 6 %}{% break "
                   "%}{% endif %}{{ i }}{% endfor %}"),
            "01245");
  EXPECT_EQ(render("{% for i in range(2) %}{% for j in range(2) %}{{ loop.index }}{{ i }}{{ j }} {% endfor "
                   "%}{{ loop.index }}|{% endfor %}"),
            "100 201 1|110 211 2|");
  EXPECT_EQ(render("{% for x in 'abc' %}{{ loop.cycle('odd', 'even') }}{% endfor %} {{ range(3)|list }} {{ "
                   "range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }}"),
            "oddevenodd [0, 1, 2] [1, 4, 7] [5, 3, 1]");
}

TEST(JinjaStatements, ScopingNamespacesAndMacros) {
  EXPECT_EQ(
      render("{% set ns = namespace(count=0, items=[]) %}{% for i in range(3) %}{% set ns.count = ns.count + "
             "i %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.count }} {{ ns.items }} {{ ns }}"),
      "3 [0, 1, 2] <Namespace {'count': 3, 'items': [0, 1, 2]}>");
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}"),
            "12121");
  EXPECT_EQ(
      render("{% for i in [1, 2, 3] %}{% if loop.first %}{% set y = 5 %}{% endif %}[{{ y }}]{% endfor %}"),
      "[5][][]");
  EXPECT_EQ(render("{% if true %}{% set z = 'set in if' %}{% endif %}{{ z }}"), "set in if");
  EXPECT_EQ(render("{% set a, b = [1, 2] %}{{ a }}{{ b }}{% set c, d = 'xy' %}{{ c }}{{ d }}{% set t = 1, 2 "
                   "%}{{ t }}"),
            "12xy(1, 2)");
  EXPECT_EQ(render("{% set x %}captured {{ 1 + 1 }}{% endset %}[{{ x }}]"), "[captured 2]");
  EXPECT_EQ(render("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ "
                   "greet('Bob') }} {{ greet('Al', greeting='Hi') }} {{ greet(name='Z') }} [{{ greet() }}]"),
            "Hello, Bob! Hi, Al! Hello, Z! [Hello, !]");
  EXPECT_EQ(render("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% "
                   "endmacro %}{{ fact(5) }} {% set g = 'global' %}{% macro m() %}{{ g }} {{ messages|length "
                   "}}{% endmacro %}{{ m() }}",
                   R"({"messages": [1, 2]})"),
            "120 global 2");
  EXPECT_EQ(render("{% set d = dict(a=1, b='x') %}{{ d }} {{ namespace(x=1).x }} {% set ns = namespace({'k': "
                   "'v'}) %}{{ ns.k }}"),
            "{'a': 1, 'b': 'x'} 1 v");
  // Macros are closures over the scope they are defined in, not the caller's.
  EXPECT_EQ(render("{% for i in [1, 2] %}{% macro show() %}{{ i }}{{ g }}{% endmacro %}{% set g = 'x' %}"
                   "{{ show() }}{% endfor %}"),
            "1x2x");
  EXPECT_EQ(
      render("{% macro outer(a) %}{% macro inner() %}{{ a }}{{ b }}{% endmacro %}{{ inner() }}{% endmacro %}"
             "{% set b = 'top' %}{% for b in ['loop'] %}{{ outer(1) }}{% endfor %}"),
      "1top");
  // transformers' {% generation %} tag (its assistant-mask extension) renders its body.
  EXPECT_EQ(render("a{% generation %}b{{ 1 }}{% endgeneration %}c"), "ab1c");
}

}  // namespace
}  // namespace qllm
