// Template: the chat-template interpreter's entry points (see template.h).
#include "jinja/template.h"

#include "jinja/evaluator.h"
#include "jinja/lexer.h"
#include "jinja/parser.h"

namespace qllm::jinja {

Template Template::parse(std::string_view source, std::string name, Limits limits) {
  const std::vector<Token> tokens = tokenize(source, name);
  auto program = std::make_shared<Program>(parse_tokens(tokens, name, limits));
  return Template(std::move(program), std::move(name), limits);
}

std::string Template::render(const Context& context) const {
  return evaluate(*program_, name_, limits_, context);
}

}  // namespace qllm::jinja
