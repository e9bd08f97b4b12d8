// The chat-template parser: tokens -> syntax tree, following jinja2/parser.py's grammar and precedence
// (filters and tests bind tighter than arithmetic; ** is left-associative; comparisons chain).
#pragma once

#include <string_view>
#include <vector>

#include "jinja/ast.h"
#include "jinja/lexer.h"
#include "jinja/template.h"

namespace qllm::jinja {

struct Program {
  Body body;
};

// Throws qllm::Error "<name>:<line>:<column>: ..." for syntax errors, unknown or unsupported tags,
// filters and tests, and nesting deeper than limits.max_nesting.
Program parse_tokens(const std::vector<Token>& tokens, std::string_view name, const Limits& limits);

}  // namespace qllm::jinja
