// The Jinja interpreter's expressions, each checked against Python jinja2 in transformers' environment
// (the expected strings are jinja2 3.1.6's output): Python arithmetic and str() / repr() of values,
// comparisons, literals, attribute / item access and slicing, tests, filters and str / dict / list methods.
#include <gtest/gtest.h>

#include "tests/cpu/jinja_test_support.h"

namespace qllm {
namespace {

using testing::render;

TEST(JinjaExpressions, Arithmetic) {
  EXPECT_EQ(render("{{ 1 + 2 }} {{ 7 - 10 }} {{ 3 * 4 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 "
                   "}} {{ 10 / 4 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2 ** 3 ** 2 }}"),
            "3 -3 12 3 -4 2 -2 2.5 1024 0.5 64");
  EXPECT_EQ(render("{{ 1.5 + 2 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1.5e-5 }} {{ 1e15 }} {{ 123456789.125 }} {{ "
                   "-0.0 }} {{ 5.0 // 2 }} {{ -5.5 % 2 }} {{ 1 / 3 }}"),
            "3.5 0.30000000000000004 1e+16 1.5e-05 1000000000000000.0 123456789.125 -0.0 2.0 0.5 "
            "0.3333333333333333");
  EXPECT_EQ(render("{{ true + 1 }} {{ -x }} {{ +x }} {{ -(1.5) }} {{ 1 - -1 }}", R"({"x": 5})"),
            "2 -5 5 -1.5 2");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none ~ true ~ [1, 'x'] ~ x }} {{ 'ab' * 3 }} {{ 2 * 'ab' }} {{ [1] * 2 }} "
                   "{{ 'x' + 'y' }} {{ [1] + [2] }} {{ (1,) + (2,) }}"),
            "a1NoneTrue[1, 'x'] ababab abab [1, 1] xy [1, 2] (1, 2)");
  EXPECT_EQ(
      render("{{ 1 == 1.0 }} {{ 1 == true }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 < 3 }} {{ 3 > 2 "
             "> 2 }} {{ 2 >= 2 }} {{ 1 != 1 }} {{ none == none }} {{ (1, 2) == [1, 2] }} {{ x == y }}"),
      "True True True True True False True False True False True");
  EXPECT_EQ(render("{{ 'a' in 'cat' }} {{ 1 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 'x' "
                   "in undefined_thing }}"),
            "True True True True False");
  EXPECT_EQ(render("{{ 1 if true else 2 }} [{{ 1 if false }}] {{ 0 or 'x' }} {{ 1 and 'y' }} {{ 0 and 'z' }} "
                   "{{ not 0 }} {{ none or none }} {{ not x is defined }}"),
            "1 [] x y 0 True None True");
  // Powers: float bases, odd powers of -1, the int64 edge, negative exponents.
  EXPECT_EQ(render("{{ 2.5 ** 2 }} {{ (-1) ** 3 }} {{ (-2) ** 63 }} {{ 1.5 ** -2 }} {{ 0 ** 0 }}"),
            "6.25 -1 -9223372036854775808 0.4444444444444444 1");
}

TEST(JinjaExpressions, Literals) {
  EXPECT_EQ(render("{{ [1, 'a', none, true, 1.5, {'k': (1,)}, (1, 2), 'it\\'s', \"q\\\"d\", 'both\\'\"', "
                   "'\\n\\t'] }}"),
            "[1, 'a', None, True, 1.5, {'k': (1,)}, (1, 2), \"it's\", 'q\"d', 'both\\'\"', '\\n\\t']");
  EXPECT_EQ(render("{{ {'a': 1, 'b': [2, 3]} }} {{ {} }} {{ [] }} {{ () }} {{ (1, 2) }} {{ 1, 2 }}"),
            "{'a': 1, 'b': [2, 3]} {} [] () (1, 2) (1, 2)");
  EXPECT_EQ(render("{{ \"a\" \"b\" 'c' }} {{ 'line\\nbreak' }} {{ '\\x41\\u00e9\\U0001F600\\101' }} {{ "
                   "'back\\\\slash' }} {{ 'unk\\d' }}"),
            "abc line\nbreak Aé😀A back\\slash unk\\d");
  EXPECT_EQ(render("{{ true }} {{ True }} {{ none }} {{ None }} {{ false|string }} {{ 1.0|string }} {{ "
                   "100000000000000000000.0 }} {{ 1_000 }}"),
            "True True None None False 1.0 1e+20 1000");
}

TEST(JinjaExpressions, AccessSlicingAndTests) {
  EXPECT_EQ(render("{{ d.a }}|{{ d['a'] }}|{{ d.missing }}|{{ d['missing'] }}|{{ d.get('a') }}|{{ d.get('z') "
                   "}}|{{ d.get('z', 5) }}|{{ d.items() }}|{{ d.keys() }}|{{ d.values() }}",
                   R"({"d": {"a": 1}})"),
            "1|1|||1|None|5|dict_items([('a', 1)])|dict_keys(['a'])|dict_values([1])");
  EXPECT_EQ(
      render(
          "{{ messages[0].role }} {{ messages[-1]['content'] }} {{ messages[5] }}|{{ (messages|last).role }} "
          "{{ messages|length }}",
          R"({"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo"}]})"),
      "system yo |assistant 3");
  EXPECT_EQ(
      render(
          "{{ 'héllo wörld'[1:4] }} {{ 'hello'[::-1] }} {{ 'hello'[-2:] }} {{ [1, 2, 3, 4, 5][1:-1] }} {{ "
          "[1, 2, 3, 4, 5][::2] }} {{ [1, 2, 3][::-1] }} {{ [1, 2, 3][5:] }} {{ 'abc'[1] }} {{ 'abc'[-1] }} "
          "{{ 'abc'[10] }}|{{ [1, 2, 3, 4][-1:0:-2] }} {{ messages[1:] | map(attribute='role') | list }}",
          R"({"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo"}]})"),
      "éll olleh lo [2, 3, 4] [1, 3, 5] [3, 2, 1] [] b c |[4, 2] ['user', 'assistant']");
  EXPECT_EQ(
      render("{{ 'x' is string }} {{ 1 is number }} {{ true is number }} {{ 1 is integer }} {{ true is "
             "integer }} {{ 1.0 is float }} {{ {} is mapping }} {{ [] is sequence }} {{ 'a' is sequence }} "
             "{{ 1 is iterable }} {{ none is none }} {{ true is boolean }} {{ 2 is even }} {{ 3 is odd }} {{ "
             "6 is divisibleby 3 }} {{ 6 is divisibleby(4) }} {{ x is sequence }} {{ x is not defined }}"),
      "True True True True False True True True True False True True True True True False True True");
  EXPECT_EQ(render("{{ 'abc' is lower }} {{ 'ABC' is upper }} {{ 'a' is eq 'a' }} {{ 1 is ne 2 }} {{ 1 is lt "
                   "2 }} {{ 1 is in [1] }} {{ 'upper' is filter }} {{ 'odd' is test }} {{ none is sameas "
                   "none }} {{ true is true }} {{ 1 is true }} {{ f is callable }}"),
            "True True True True True True True True True True False True");
}

TEST(JinjaExpressions, Filters) {
  EXPECT_EQ(render("{{ '  hi  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'Hello World'|upper }}|{{ 'Hello'|lower "
                   "}}|{{ 'hello world-foo(bar'|title }}|{{ 'hELLO'|capitalize }}|{{ 5|trim }}"),
            "hi|hi|HELLO WORLD|hello|Hello World-Foo(Bar|Hello|5");
  EXPECT_EQ(render("{{ x|default('d') }}|{{ ''|default('e') }}|{{ ''|default('e', true) }}|{{ x|d('f') }}|{{ "
                   "x|length }}|{{ x|trim }}|{{ x|list }}|{{ x|first }}"),
            "d||e|f|0||[]|");
  EXPECT_EQ(render("{{ [1, 2, 3]|length }} {{ 'héllo'|length }} {{ {'a': 1}|count }} {{ [3, 1, 2]|sort }} {{ "
                   "[3, 1, 2]|sort(reverse=true) }} {{ ['b', 'A', 'c']|sort }} {{ [1, 2]|first }} {{ [1, "
                   "2]|last }} {{ [1, 2, 3]|join(', ') }} {{ [1, 2, 3]|sum }} {{ [1, 2, 3]|max }} {{ [1, 2, "
                   "3]|min }} {{ ['b', 'A']|max }}"),
            "3 5 1 [1, 2, 3] [3, 2, 1] ['A', 'b', 'c'] 1 2 1, 2, 3 6 3 1 b");
  EXPECT_EQ(
      render("{{ [1, 2, 2, 3, 1]|unique|list }} {{ ['a', 'A', 'b']|unique|list }} {{ [1, 2, 3]|reverse|list "
             "}} {{ 'abc'|reverse }} {{ 'ab'|list }} {{ {'a': 1}|list }} {{ {'a': 1, 'b': 2}|items|list }}"),
      "[1, 2, 3] ['a', 'b'] [3, 2, 1] cba ['a', 'b'] ['a'] [('a', 1), ('b', 2)]");
  EXPECT_EQ(
      render(
          "{{ messages|selectattr('role', 'equalto', 'user')|list|length }} {{ "
          "messages|map(attribute='role')|join(',') }} {{ messages|rejectattr('role', 'eq', "
          "'user')|map(attribute='content')|list }} {{ messages|selectattr('missing')|list }} {{ "
          "messages|map(attribute='x', default='-')|join }}",
          R"({"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo"}]})"),
      "1 system,user,assistant ['sys', 'yo'] [] ---");
  EXPECT_EQ(render("{{ [1, 2, 3]|select('odd')|list }} {{ [1, 2, 3]|reject('odd')|list }} {{ ['a', "
                   "'b']|map('upper')|list }} {{ [0, 1, 2]|select|list }} {{ ['a', 'b']|map('replace', 'a', "
                   "'z')|list }}"),
            "[1, 3] [2] ['A', 'B'] [1, 2] ['z', 'b']");
  EXPECT_EQ(
      render(
          "{{ messages|tojson }}|{{ messages[:1]|tojson(indent=2) }}|{{ {'b': 1, 'a': "
          "'é\\n\"'}|tojson(sort_keys=true) }}|{{ 'é😀'|tojson(true) }}|{{ [1.0, 1e20, none, true, "
          "'a/b<c>&']|tojson }}|{{ {'a': 1}|tojson(separators=(',', ':')) }}|{{ [[]]|tojson(indent='\\t') "
          "}}|{{ {}|tojson(indent=2) }}",
          R"({"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo"}]})"),
      "[{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \" hi \"}, "
      "{\"role\": \"assistant\", \"content\": \"yo\"}]|[\n  {\n    \"role\": \"system\",\n    \"content\": "
      "\"sys\"\n  }\n]|{\"a\": \"é\\n\\\"\", \"b\": 1}|\"\\u00e9\\ud83d\\ude00\"|[1.0, 1e+20, null, true, "
      "\"a/b<c>&\"]|{\"a\":1}|[\n\t[]\n]|{}");
  EXPECT_EQ(render("{{ 42|int }} {{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} "
                   "{{ -3.9|int }} {{ ' 1_0 '|int }} {{ '3.5'|float }} {{ 3|float }} {{ 'x'|float }} {{ "
                   "'1e3'|float }} {{ 2.5|round }} {{ 3.5|round }} {{ 3.14159|round(2) }} {{ "
                   "3.14159|round(2, 'floor') }} {{ 2|round }} {{ -3|abs }} {{ -2.5|abs }}"),
            "42 42 4 0 7 3 -3 10 3.5 3.0 0.0 1000.0 2.0 4.0 3.14 3.14 2 3 2.5");
  EXPECT_EQ(
      render("{{ 'aaa'|replace('a', 'b') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 'ab'|replace('', '-') }} {{ "
             "'x\\ny'|indent(2) }}|{{ 'x\\n\\ny'|indent(2, true) }}|{{ 'x\\n\\ny'|indent('>', blank=true) "
             "}}|{{ 'a'|safe }} {{ 'b'|attr('upper') is callable }}"),
      "bbb bba -a-b- x\n  y|  x\n\n  y|x\n>\n>y|a True");
  // select, map, unique, items and reverse return one-shot generators: always true, iterable once.
  EXPECT_EQ(render("{% if []|select %}T{% endif %}{{ [1, 2]|reverse|first }}{{ [3, 1]|unique|sort }}"
                   "{% for k, v in {'a': 1}|items %}{{ k }}{{ v }}{% endfor %}{{ ([1]|map('string'))[0] }}"),
            "T2[1, 3]a1");
}

TEST(JinjaExpressions, Methods) {
  // strftime_now as Python's datetime.strftime: "%%" and a lone final "%" both write "%".
  EXPECT_EQ(render("{{ strftime_now('%%|%') }}|{{ x is sameas y }}|{{ none is sameas none }}"),
            "%|%|False|True");
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }} {{ '  a b  c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ "
                   "'a,b,c'.rsplit(',', 1) }} {{ ' a b '.rsplit(none, 1) }} {{ 'abc'.startswith('a') }} {{ "
                   "'abc'.endswith(('x', 'c')) }}"),
            "['a', 'b', '', 'c'] ['a', 'b', 'c'] ['a', 'b c'] ['a,b', 'c'] [' a', 'b'] True True");
  EXPECT_EQ(render("{{ 'abc'.upper() }} {{ 'ABC'.lower() }} {{ 'hello world'.title() }} {{ 'they\\'re "
                   "bill\\'s'.title() }} {{ 'hELLO'.capitalize() }} {{ 'xhix'.strip('x') }} {{ '  "
                   "l'.lstrip() }} {{ 'r  '.rstrip() }} {{ 'aaa'.replace('a', 'b', 2) }} {{ 'abc'.find('c') "
                   "}} {{ 'abc'.rfind('z') }} {{ 'aXbXc'.count('X') }} {{ '-'.join(['a', 'b']) }}"),
            "ABC abc Hello World They'Re Bill'S Hello hi l r bba 2 -1 2 a-b");
  EXPECT_EQ(render("{{ 'a\\nb\\r\\nc'.splitlines() }} {{ 'pre_x'.removeprefix('pre_') }} {{ "
                   "'x.txt'.removesuffix('.txt') }} {{ '  '.isspace() }} {{ '12'.isdigit() }} {{ "
                   "'ab'.isalpha() }} {{ 'abc'.islower() }} {{ [1, 2, 1].count(1) }} {{ [1, 2].index(2) }}"),
            "['a', 'b', 'c'] x x True True True True 2 1");
  EXPECT_EQ(
      render("{{ 'ß'.upper() }} {{ 'ÀÉ'|lower }} {{ 'é'|upper }} {{ '中文 ok'|upper }} {{ 'ﬁ'|length }}"),
      "SS àé É 中文 OK 1");
}

}  // namespace
}  // namespace qllm
