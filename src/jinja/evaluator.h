// The chat-template evaluator: renders a parsed template with Jinja2's scoping (a for loop's body gets a
// fresh scope each iteration; macros see their arguments and the template-level variables), Python's
// operators, and the builtins of builtins.h. Errors carry the template position of the failing node.
#pragma once

#include <string>
#include <string_view>

#include "jinja/parser.h"
#include "jinja/template.h"

namespace qllm::jinja {

std::string evaluate(const Program& program, std::string_view name, const Limits& limits,
                     const Context& context);

}  // namespace qllm::jinja
