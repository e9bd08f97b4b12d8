// The chat-template lexer: template source -> text and tag tokens, with the whitespace rules of the
// environment transformers renders in (trim_blocks, lstrip_blocks, "-" / "+" markers, comments, raw
// blocks, newline normalization and the dropped final newline, as Jinja2's lexer does them).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qllm::jinja {

struct Pos {
  uint32_t line = 1;
  uint32_t column = 1;
};

enum class TokenType {
  Text,
  VariableBegin,
  VariableEnd,
  BlockBegin,
  BlockEnd,
  Name,
  String,
  Integer,
  Float,
  Operator
};

struct Token {
  TokenType type;
  std::string text;  // Text: the text; Name: the name; String: the decoded value; Operator: "==", "(", ...
  int64_t integer = 0;
  double number = 0.0;
  Pos pos;
};

// Throws qllm::Error "<name>:<line>:<column>: <what>" for malformed input (an unclosed tag, comment or
// string, an unknown character or escape, unbalanced brackets). `source` must be valid UTF-8.
std::vector<Token> tokenize(std::string_view source, std::string_view name);

// "<name>:<line>:<column>", the prefix of every error about a template position.
std::string where(std::string_view name, Pos pos);

}  // namespace qllm::jinja
