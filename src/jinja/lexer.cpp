// The chat-template lexer (see lexer.h). It follows jinja2/lexer.py: the text before a tag is stripped
// for "{%-" (all whitespace) or, with lstrip_blocks, back to the line start when only spaces precede a
// block or comment tag on its line; a block or comment end eats one newline (trim_blocks) or, with "-",
// all following whitespace.
#include "jinja/lexer.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include "core/utf8.h"
#include "jinja/text.h"
#include "qllm/error.h"

namespace qllm::jinja {

std::string where(std::string_view name, Pos pos) {
  return fmt::format("{}:{}:{}", name, pos.line, pos.column);
}

namespace {

// "\r\n" and "\r" become "\n", and one final newline is dropped (keep_trailing_newline=False).
std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
  return is_name_start(c) || is_digit(c);
}

class Lexer {
 public:
  Lexer(std::string_view source, std::string_view name) : src_(normalize_newlines(source)), name_(name) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      const size_t start = next_tag(pos_);
      if (start == std::string::npos) {
        emit_text(src_.substr(pos_), pos_);
        break;
      }
      const char kind = src_[start + 1];
      const char sign =
          start + 2 < src_.size() && (src_[start + 2] == '-' || src_[start + 2] == '+') ? src_[start + 2] : 0;
      size_t raw_body = 0;
      const bool raw = kind == '%' && raw_begin(start, raw_body);
      emit_text(strip_before(src_.substr(pos_, start - pos_), sign, kind != '{'), pos_);
      if (kind == '#') {
        comment(start);
      } else if (raw) {
        raw_block(start, raw_body);
      } else {
        tag(start, kind, sign);
      }
    }
    return std::move(tokens_);
  }

 private:
  // Line and column (in code points) of a byte offset. Tokens come in source order, so the column is
  // counted on from the previous position rather than from the line start each time.
  Pos pos_of(size_t offset) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - 1;
    const size_t line_start = *it;
    size_t from = line_start;
    size_t column = 1;
    if (cursor_offset_ >= line_start && cursor_offset_ <= offset) {
      from = cursor_offset_;
      column = cursor_column_;
    }
    column += text::code_point_count(std::string_view(src_).substr(from, offset - from));
    cursor_offset_ = offset;
    cursor_column_ = column;
    return Pos{static_cast<uint32_t>(it - line_starts_.begin() + 1), static_cast<uint32_t>(column)};
  }

  [[noreturn]] void error(size_t offset, const std::string& what) const {
    fail("{}: {}", where(name_, pos_of(offset)), what);
  }

  size_t next_tag(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  // Python whitespace (the lexer's \s) starting at `at`: its length in bytes.
  size_t whitespace_length(size_t at) const {
    size_t p = at;
    while (p < src_.size()) {
      size_t next = p;
      if (!text::is_python_space(utf8::next_code_point(src_, next))) break;
      p = next;
    }
    return p - at;
  }

  std::string strip_before(std::string text, char sign, bool block_or_comment) const {
    if (sign == '-') return text::strip(text, std::nullopt, false, true);
    if (sign == '+' || !block_or_comment) return text;
    const size_t line_start = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    if (line_start == 0 && !line_starting_) return text;
    const std::string_view tail = std::string_view(text).substr(line_start);
    if (!tail.empty() && text::strip(tail, std::nullopt, true, false).empty()) text.resize(line_start);
    return text;
  }

  void emit_text(std::string text, size_t offset) {
    if (!text.empty()) tokens_.push_back(Token{TokenType::Text, std::move(text), 0, 0.0, pos_of(offset)});
  }

  // After a block or comment end: "-" eats all whitespace, "+" nothing, else one newline (trim_blocks).
  void finish_tag(size_t end, char marker) {
    if (marker == '-') {
      end += whitespace_length(end);
    } else if (marker != '+' && end < src_.size() && src_[end] == '\n') {
      ++end;
    }
    line_starting_ = end > 0 && src_[end - 1] == '\n';
    pos_ = end;
  }

  void comment(size_t start) {
    const size_t close = src_.find("#}", start + 2);
    if (close == std::string::npos) error(start, "unclosed comment");
    const char marker =
        close > start + 2 && (src_[close - 1] == '-' || src_[close - 1] == '+') ? src_[close - 1] : 0;
    finish_tag(close + 2, marker);
  }

  // "{%[-+]? raw [-]?%}": sets `body` to where the raw text begins.
  bool raw_begin(size_t start, size_t& body) const {
    size_t p = start + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p += whitespace_length(p);
    if (src_.compare(p, 3, "raw") != 0 || (p + 3 < src_.size() && is_name_char(src_[p + 3]))) return false;
    p += 3;
    p += whitespace_length(p);
    if (src_.compare(p, 3, "-%}") == 0) {
      body = p + 3 + whitespace_length(p + 3);
      return true;
    }
    if (src_.compare(p, 2, "%}") == 0) {
      body = p + 2;
      return true;
    }
    return false;
  }

  void raw_block(size_t start, size_t body) {
    line_starting_ = body > 0 && src_[body - 1] == '\n';
    for (size_t at = src_.find("{%", body); at != std::string::npos; at = src_.find("{%", at + 2)) {
      size_t p = at + 2;
      const char sign = p < src_.size() && (src_[p] == '-' || src_[p] == '+') ? src_[p] : 0;
      if (sign != 0) ++p;
      p += whitespace_length(p);
      if (src_.compare(p, 6, "endraw") != 0) continue;
      p += 6;
      p += whitespace_length(p);
      const char marker = p < src_.size() && (src_[p] == '-' || src_[p] == '+') ? src_[p] : 0;
      if (src_.compare(p + (marker != 0 ? 1 : 0), 2, "%}") != 0) continue;
      emit_text(strip_before(src_.substr(body, at - body), sign, true), body);
      finish_tag(p + (marker != 0 ? 1 : 0) + 2, marker);
      return;
    }
    error(start, "unclosed raw block: no {% endraw %}");
  }

  void tag(size_t start, char kind, char sign) {
    const bool block = kind == '%';
    tokens_.push_back(
        Token{block ? TokenType::BlockBegin : TokenType::VariableBegin, "", 0, 0.0, pos_of(start)});
    size_t p = start + 2 + (sign != 0 ? 1 : 0);
    std::vector<std::pair<char, size_t>> brackets;
    while (true) {
      p += whitespace_length(p);
      if (p >= src_.size()) error(start, fmt::format("unclosed {} tag", block ? "{% %}" : "{{ }}"));
      if (brackets.empty()) {
        const std::string_view close = block ? "%}" : "}}";
        const char marker = src_[p];
        if ((marker == '-' || (block && marker == '+')) && src_.compare(p + 1, 2, close) == 0) {
          tokens_.push_back(
              Token{block ? TokenType::BlockEnd : TokenType::VariableEnd, "", 0, 0.0, pos_of(p)});
          if (block) {
            finish_tag(p + 3, marker);
          } else {
            finish_tag(p + 3, '-');
          }
          return;
        }
        if (src_.compare(p, 2, close) == 0) {
          tokens_.push_back(
              Token{block ? TokenType::BlockEnd : TokenType::VariableEnd, "", 0, 0.0, pos_of(p)});
          if (block) {
            finish_tag(p + 2, 0);
          } else {
            line_starting_ = false;
            pos_ = p + 2;
          }
          return;
        }
      }
      p = token(p, brackets);
    }
  }

  size_t token(size_t p, std::vector<std::pair<char, size_t>>& brackets) {
    const char c = src_[p];
    if (is_name_start(c)) {
      size_t end = p;
      while (end < src_.size() && is_name_char(src_[end])) ++end;
      tokens_.push_back(Token{TokenType::Name, src_.substr(p, end - p), 0, 0.0, pos_of(p)});
      return end;
    }
    if (is_digit(c)) return number(p);
    if (c == '\'' || c == '"') return string(p);
    static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const std::string_view op : kTwo) {
      if (src_.compare(p, 2, op) == 0) {
        tokens_.push_back(Token{TokenType::Operator, std::string(op), 0, 0.0, pos_of(p)});
        return p + 2;
      }
    }
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) == std::string_view::npos) {
      size_t next = p;
      error(p, fmt::format("unexpected character U+{:04X} in a tag", utf8::next_code_point(src_, next)));
    }
    if (c == '(' || c == '[' || c == '{') brackets.emplace_back(c, p);
    if (c == ')' || c == ']' || c == '}') {
      const char open = c == ')' ? '(' : c == ']' ? '[' : '{';
      if (brackets.empty() || brackets.back().first != open) error(p, fmt::format("unexpected '{}'", c));
      brackets.pop_back();
    }
    tokens_.push_back(Token{TokenType::Operator, std::string(1, c), 0, 0.0, pos_of(p)});
    return p + 1;
  }

  // Digits with optional single underscores between them ("1_000").
  size_t digits(size_t p, std::string& out) const {
    while (p < src_.size()) {
      if (is_digit(src_[p])) {
        out += src_[p++];
      } else if (src_[p] == '_' && p + 1 < src_.size() && is_digit(src_[p + 1]) && !out.empty()) {
        ++p;
      } else {
        break;
      }
    }
    return p;
  }

  size_t number(size_t start) {
    std::string literal;
    size_t p = digits(start, literal);
    if (p < src_.size() && (src_[p] == 'x' || src_[p] == 'X' || src_[p] == 'o' || src_[p] == 'O' ||
                            src_[p] == 'b' || src_[p] == 'B')) {
      error(start, "hexadecimal, octal and binary literals are not supported");
    }
    // No float right after ".": "x.0.1" is x[0][1], as Jinja's (?<!\.) gives.
    const bool after_dot =
        !tokens_.empty() && tokens_.back().type == TokenType::Operator && tokens_.back().text == ".";
    bool is_float = false;
    if (!after_dot && p + 1 < src_.size() && src_[p] == '.' && is_digit(src_[p + 1])) {
      literal += '.';
      p = digits(p + 1, literal);
      is_float = true;
    }
    if (!after_dot && p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      std::string exponent = "e";
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) exponent += src_[q++];
      if (q < src_.size() && is_digit(src_[q])) {
        p = digits(q, exponent);
        literal += exponent;
        is_float = true;
      }
    }
    Token token{is_float ? TokenType::Float : TokenType::Integer, literal, 0, 0.0, pos_of(start)};
    if (is_float) {
      token.number = std::strtod(literal.c_str(), nullptr);
    } else {
      if (literal.size() > 1 && literal[0] == '0' && literal.find_first_not_of('0') != std::string::npos) {
        error(start, "integer literals with leading zeros are not allowed");
      }
      const auto result = std::from_chars(literal.data(), literal.data() + literal.size(), token.integer);
      if (result.ec != std::errc()) error(start, fmt::format("integer literal {} is too large", literal));
    }
    tokens_.push_back(std::move(token));
    return p;
  }

  size_t hex_value(size_t p, size_t count, size_t escape_at) const {
    if (p + count > src_.size()) error(escape_at, "truncated \\x, \\u or \\U escape");
    size_t value = 0;
    for (size_t i = 0; i < count; ++i) {
      const char h = src_[p + i];
      const int digit = is_digit(h)              ? h - '0'
                        : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                        : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                                 : -1;
      if (digit < 0) error(escape_at, "truncated \\x, \\u or \\U escape");
      value = value * 16 + static_cast<size_t>(digit);
    }
    return value;
  }

  // A string literal, decoded as Python's unicode-escape codec decodes it (what Jinja2 does).
  size_t string(size_t start) {
    const char quote = src_[start];
    std::string value;
    size_t p = start + 1;
    while (true) {
      if (p >= src_.size()) error(start, "unclosed string literal");
      const char c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) error(start, "unclosed string literal");
      const char e = src_[p + 1];
      const size_t escape_at = p;
      p += 2;
      switch (e) {
        case '\n':
          break;  // line continuation
        case '\\':
        case '\'':
        case '"':
          value += e;
          break;
        case 'a':
          value += '\a';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'n':
          value += '\n';
          break;
        case 'r':
          value += '\r';
          break;
        case 't':
          value += '\t';
          break;
        case 'v':
          value += '\v';
          break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t count = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          const size_t cp = hex_value(p, count, escape_at);
          p += count;
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            error(escape_at, "escape of a surrogate or out-of-range code point is not supported");
          }
          utf8::append_code_point(value, static_cast<uint32_t>(cp));
          break;
        }
        case 'N':
          error(escape_at, "\\N{...} escapes are not supported");
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int i = 0; i < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++i) {
              cp = cp * 8 + static_cast<uint32_t>(src_[p++] - '0');
            }
            utf8::append_code_point(value, cp);
          } else if (static_cast<unsigned char>(e) >= 0x80) {
            error(escape_at, "a backslash before a non-ASCII character is not supported");
          } else {
            value += '\\';  // unknown escapes stay as they are
            value += e;
          }
      }
    }
    tokens_.push_back(Token{TokenType::String, std::move(value), 0, 0.0, pos_of(start)});
    return p + 1;
  }

  std::string src_;
  std::string_view name_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  bool line_starting_ = true;
  mutable size_t cursor_offset_ = 0;  // pos_of's last offset and its column
  mutable size_t cursor_column_ = 1;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, std::string_view name) {
  const auto bad = utf8::first_invalid_byte(source);
  QLLM_CHECK(!bad, "{}: invalid UTF-8 at byte offset {}", name, bad.value_or(0));
  return Lexer(source, name).run();
}

}  // namespace qllm::jinja
