// The chat-template parser (see parser.h). Recursive descent over the lexer's tokens; every recursive
// entry counts against limits.max_nesting and every node records its depth, so a crafted template
// (100k nested parentheses or blocks, a 100k-term sum) is refused instead of overflowing the stack.
#include "jinja/parser.h"

#include <fmt/format.h>

#include <algorithm>
#include <initializer_list>

#include "jinja/builtins.h"
#include "qllm/error.h"

namespace qllm::jinja {

namespace {

constexpr std::string_view kUnsupportedTags[] = {"call",    "filter", "with", "include",    "import", "from",
                                                 "extends", "block",  "do",   "autoescape", "trans"};

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, std::string_view name, const Limits& limits)
      : tokens_(tokens), name_(name), limits_(limits) {}

  Program run() {
    Program program;
    program.body = subparse({}, nullptr);
    return program;
  }

 private:
  // Counts one level of recursion for as long as it lives.
  class Nesting {
   public:
    Nesting(Parser& parser, Pos pos) : parser_(parser) {
      if (++parser_.nesting_ > parser_.limits_.max_nesting) {
        parser_.error(pos, fmt::format("template nested deeper than {} levels", parser_.limits_.max_nesting));
      }
    }
    ~Nesting() { --parser_.nesting_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;

   private:
    Parser& parser_;
  };

  [[noreturn]] void error(Pos pos, const std::string& what) const { fail("{}: {}", where(name_, pos), what); }

  bool at_end() const { return i_ >= tokens_.size(); }
  const Token& current() const {
    if (at_end()) {
      const Pos last = tokens_.empty() ? Pos{} : tokens_.back().pos;
      error(last, "unexpected end of template");
    }
    return tokens_[i_];
  }
  bool at_op(std::string_view op) const {
    return !at_end() && tokens_[i_].type == TokenType::Operator && tokens_[i_].text == op;
  }
  bool at_name(std::string_view name) const {
    return !at_end() && tokens_[i_].type == TokenType::Name && tokens_[i_].text == name;
  }
  bool at_name_after(size_t k, std::string_view name) const {
    return i_ + k < tokens_.size() && tokens_[i_ + k].type == TokenType::Name && tokens_[i_ + k].text == name;
  }
  bool at(TokenType type) const { return !at_end() && tokens_[i_].type == type; }
  const Token& next() {
    const Token& token = current();
    ++i_;
    return token;
  }
  std::string describe(const Token& token) const {
    switch (token.type) {
      case TokenType::Text:
        return "text";
      case TokenType::VariableBegin:
        return "'{{'";
      case TokenType::VariableEnd:
        return "'}}'";
      case TokenType::BlockBegin:
        return "'{%'";
      case TokenType::BlockEnd:
        return "'%}'";
      case TokenType::String:
        return "a string";
      case TokenType::Integer:
      case TokenType::Float:
        return "a number";
      default:
        return "'" + token.text + "'";
    }
  }
  void expect_op(std::string_view op) {
    if (!at_op(op)) error(current().pos, fmt::format("expected '{}', got {}", op, describe(current())));
    ++i_;
  }
  void expect(TokenType type, std::string_view what) {
    if (!at(type)) error(current().pos, fmt::format("expected {}, got {}", what, describe(current())));
    ++i_;
  }
  void expect_block_end() { expect(TokenType::BlockEnd, "'%}'"); }
  std::string expect_name() {
    if (!at(TokenType::Name))
      error(current().pos, fmt::format("expected a name, got {}", describe(current())));
    return next().text;
  }

  ExprPtr node(ExprKind kind, Pos pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }
  // Sets the node's depth from its arguments and refuses trees deeper than the nesting limit.
  ExprPtr finish(ExprPtr e) {
    size_t depth = 0;
    for (const auto& arg : e->args) {
      if (arg) depth = std::max(depth, arg->depth);
    }
    e->depth = depth + 1;
    if (e->depth > limits_.max_nesting) {
      error(e->pos, fmt::format("expression nested deeper than {} levels", limits_.max_nesting));
    }
    return e;
  }
  ExprPtr unary(ExprKind kind, Pos pos, ExprPtr operand) {
    auto e = node(kind, pos);
    e->args.push_back(std::move(operand));
    return finish(std::move(e));
  }
  ExprPtr binary(ExprKind kind, Pos pos, ExprPtr left, ExprPtr right) {
    auto e = node(kind, pos);
    e->args.push_back(std::move(left));
    e->args.push_back(std::move(right));
    return finish(std::move(e));
  }

  // ---- statements ----

  // Statements up to a block tag named in `ends` (left unconsumed after its "{%", name in *found), or to
  // the end of the template when `ends` is empty.
  Body subparse(std::initializer_list<std::string_view> ends, std::string* found) {
    Body body;
    while (!at_end()) {
      const Token& token = tokens_[i_];
      if (token.type == TokenType::Text) {
        auto stmt = statement(StmtKind::Text, token.pos);
        stmt->text = token.text;
        body.push_back(std::move(stmt));
        ++i_;
      } else if (token.type == TokenType::VariableBegin) {
        ++i_;
        auto stmt = statement(StmtKind::Print, token.pos);
        stmt->expr = parse_tuple(true, {});
        expect(TokenType::VariableEnd, "'}}'");
        body.push_back(std::move(stmt));
      } else if (token.type == TokenType::BlockBegin) {
        if (i_ + 1 < tokens_.size() && tokens_[i_ + 1].type == TokenType::Name &&
            std::find(ends.begin(), ends.end(), tokens_[i_ + 1].text) != ends.end()) {
          ++i_;
          *found = tokens_[i_].text;
          ++i_;
          return body;
        }
        body.push_back(parse_statement());
      } else {
        error(token.pos, fmt::format("unexpected {}", describe(token)));
      }
    }
    if (ends.size() != 0) {
      std::string names;
      for (const auto end : ends) names += (names.empty() ? "'" : " or '") + std::string(end) + "'";
      error(tokens_.empty() ? Pos{} : tokens_.back().pos,
            fmt::format("unexpected end of template, expected {}", names));
    }
    return body;
  }

  std::unique_ptr<Stmt> statement(StmtKind kind, Pos pos) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->pos = pos;
    return s;
  }

  std::unique_ptr<Stmt> parse_statement() {
    const Pos begin = next().pos;  // "{%"
    Nesting nesting(*this, begin);
    if (!at(TokenType::Name))
      error(current().pos, fmt::format("expected a tag name, got {}", describe(current())));
    const Token& tag = next();
    if (tag.text == "if") return parse_if(tag.pos);
    if (tag.text == "for") return parse_for(tag.pos);
    if (tag.text == "set") return parse_set(tag.pos);
    if (tag.text == "macro") return parse_macro(tag.pos);
    if (tag.text == "break" || tag.text == "continue") {
      if (loop_depth_ == 0) error(tag.pos, fmt::format("'{}' outside of a for loop", tag.text));
      expect_block_end();
      return statement(tag.text == "break" ? StmtKind::Break : StmtKind::Continue, tag.pos);
    }
    if (tag.text == "generation") {  // transformers' assistant-mask extension: renders its body
      expect_block_end();
      auto stmt = statement(StmtKind::Block, tag.pos);
      std::string found;
      stmt->body = subparse({"endgeneration"}, &found);
      expect_block_end();
      return stmt;
    }
    for (const std::string_view unsupported : kUnsupportedTags) {
      if (tag.text == unsupported) error(tag.pos, fmt::format("the '{}' tag is not supported", tag.text));
    }
    error(tag.pos, fmt::format("unknown tag '{}'", tag.text));
  }

  std::unique_ptr<Stmt> parse_if(Pos pos) {
    auto stmt = statement(StmtKind::If, pos);
    std::string found = "if";
    while (found == "if" || found == "elif") {
      ExprPtr condition = parse_tuple(false, {});
      expect_block_end();
      Body body = subparse({"elif", "else", "endif"}, &found);
      stmt->branches.emplace_back(std::move(condition), std::move(body));
    }
    if (found == "else") {
      expect_block_end();
      stmt->else_body = subparse({"endif"}, &found);
    }
    expect_block_end();
    return stmt;
  }

  // A for target or set target: a name, or names separated by commas (optionally in parentheses).
  std::vector<std::string> parse_names() {
    std::vector<std::string> names;
    const bool parenthesized = at_op("(");
    if (parenthesized) ++i_;
    names.push_back(expect_name());
    while (at_op(",")) {
      ++i_;
      if (at_name("in") || at_op(")")) break;  // "for a, in x": a one-name tuple
      names.push_back(expect_name());
    }
    if (parenthesized) expect_op(")");
    return names;
  }

  std::unique_ptr<Stmt> parse_for(Pos pos) {
    auto stmt = statement(StmtKind::For, pos);
    stmt->targets = parse_names();
    if (!at_name("in")) error(current().pos, fmt::format("expected 'in', got {}", describe(current())));
    ++i_;
    stmt->expr = parse_tuple(false, {"recursive"});
    if (at_name("if")) {
      ++i_;
      stmt->filter = parse_expression(true);
    }
    if (at_name("recursive")) error(current().pos, "recursive for loops are not supported");
    expect_block_end();
    ++loop_depth_;
    std::string found;
    stmt->body = subparse({"endfor", "else"}, &found);
    --loop_depth_;
    if (found == "else") {
      expect_block_end();
      stmt->else_body = subparse({"endfor"}, &found);
    }
    expect_block_end();
    return stmt;
  }

  std::unique_ptr<Stmt> parse_set(Pos pos) {
    auto stmt = statement(StmtKind::Set, pos);
    if (at(TokenType::Name) && i_ + 1 < tokens_.size() && tokens_[i_ + 1].type == TokenType::Operator &&
        tokens_[i_ + 1].text == ".") {
      stmt->targets.push_back(next().text);
      ++i_;
      stmt->targets.push_back(expect_name());
      stmt->attribute_target = true;
    } else {
      stmt->targets = parse_names();
    }
    if (at(TokenType::BlockEnd)) {
      if (stmt->attribute_target || stmt->targets.size() != 1)
        error(pos, "a block set assigns a single name");
      ++i_;
      stmt->kind = StmtKind::SetBlock;
      std::string found;
      stmt->body = subparse({"endset"}, &found);
      expect_block_end();
      return stmt;
    }
    if (at_op("|")) error(current().pos, "filters on a block set are not supported");
    expect_op("=");
    stmt->expr = parse_tuple(true, {});
    expect_block_end();
    return stmt;
  }

  std::unique_ptr<Stmt> parse_macro(Pos pos) {
    auto stmt = statement(StmtKind::Macro, pos);
    stmt->targets.push_back(expect_name());
    expect_op("(");
    while (!at_op(")")) {
      if (!stmt->params.empty()) expect_op(",");
      if (at_op(")")) break;
      stmt->params.push_back(expect_name());
      if (at_op("=")) {
        ++i_;
        stmt->defaults.push_back(parse_expression(true));
      } else if (!stmt->defaults.empty()) {
        error(current().pos, "a macro parameter without a default follows one with a default");
      }
    }
    ++i_;
    expect_block_end();
    const size_t saved_loops = loop_depth_;
    loop_depth_ = 0;
    std::string found;
    stmt->body = subparse({"endmacro"}, &found);
    loop_depth_ = saved_loops;
    expect_block_end();
    return stmt;
  }

  // ---- expressions ----

  bool at_tuple_end(std::initializer_list<std::string_view> extra_ends) const {
    if (at_end() || at(TokenType::VariableEnd) || at(TokenType::BlockEnd) || at_op(")")) return true;
    for (const auto end : extra_ends) {
      if (at_name(end)) return true;
    }
    return false;
  }

  // Expressions separated by commas: a tuple when there is a comma, else the expression itself.
  ExprPtr parse_tuple(bool with_condexpr, std::initializer_list<std::string_view> extra_ends,
                      bool explicit_parentheses = false) {
    const Pos pos = current().pos;
    std::vector<ExprPtr> items;
    bool comma = false;
    while (true) {
      if (!items.empty()) {
        if (!at_op(",")) break;
        ++i_;
        comma = true;
      }
      if (at_tuple_end(extra_ends)) break;
      items.push_back(parse_expression(with_condexpr));
    }
    if (!comma && items.size() == 1) return std::move(items[0]);
    if (items.empty() && !explicit_parentheses)
      error(pos, fmt::format("expected an expression, got {}", describe(current())));
    auto e = node(ExprKind::Tuple, pos);
    e->args = std::move(items);
    return finish(std::move(e));
  }

  ExprPtr parse_expression(bool with_condexpr) {
    Nesting nesting(*this, current().pos);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    ExprPtr value = parse_or();
    while (at_name("if")) {
      const Pos pos = next().pos;
      auto e = node(ExprKind::Conditional, pos);
      ExprPtr condition = parse_or();
      ExprPtr otherwise;
      if (at_name("else")) {
        ++i_;
        otherwise = parse_expression(true);
      }
      e->args.push_back(std::move(value));
      e->args.push_back(std::move(condition));
      e->args.push_back(std::move(otherwise));
      value = finish(std::move(e));
    }
    return value;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (at_name("or")) {
      const Pos pos = next().pos;
      left = binary(ExprKind::Or, pos, std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (at_name("and")) {
      const Pos pos = next().pos;
      left = binary(ExprKind::And, pos, std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      const Pos pos = next().pos;
      Nesting nesting(*this, pos);
      return unary(ExprKind::Not, pos, parse_not());
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Pos pos = current().pos;
    ExprPtr first = parse_math1();
    auto e = node(ExprKind::Compare, pos);
    e->args.push_back(std::move(first));
    while (true) {
      static const std::pair<std::string_view, CompareOp> kOps[] = {
          {"==", CompareOp::Eq}, {"!=", CompareOp::Ne}, {"<", CompareOp::Lt},
          {"<=", CompareOp::Le}, {">", CompareOp::Gt},  {">=", CompareOp::Ge}};
      std::optional<CompareOp> op;
      for (const auto& [text, value] : kOps) {
        if (at_op(text)) op = value;
      }
      if (op) {
        ++i_;
      } else if (at_name("in")) {
        ++i_;
        op = CompareOp::In;
      } else if (at_name("not") && at_name_after(1, "in")) {
        i_ += 2;
        op = CompareOp::NotIn;
      } else {
        break;
      }
      e->compare_ops.push_back(*op);
      e->args.push_back(parse_math1());
    }
    if (e->compare_ops.empty()) return std::move(e->args[0]);
    return finish(std::move(e));
  }

  ExprPtr arithmetic(BinaryOp op, Pos pos, ExprPtr left, ExprPtr right) {
    auto e = node(ExprKind::Binary, pos);
    e->op = op;
    e->args.push_back(std::move(left));
    e->args.push_back(std::move(right));
    return finish(std::move(e));
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (at_op("+") || at_op("-")) {
      const Token& op = next();
      left =
          arithmetic(op.text == "+" ? BinaryOp::Add : BinaryOp::Sub, op.pos, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    const Pos pos = current().pos;
    ExprPtr first = parse_math2();
    if (!at_op("~")) return first;
    auto e = node(ExprKind::Concat, pos);
    e->args.push_back(std::move(first));
    while (at_op("~")) {
      ++i_;
      e->args.push_back(parse_math2());
    }
    return finish(std::move(e));
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const Token& op = next();
      const BinaryOp kind = op.text == "*"    ? BinaryOp::Mul
                            : op.text == "/"  ? BinaryOp::Div
                            : op.text == "//" ? BinaryOp::FloorDiv
                                              : BinaryOp::Mod;
      left = arithmetic(kind, op.pos, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (at_op("**")) {
      const Pos pos = next().pos;
      left = arithmetic(BinaryOp::Pow, pos, std::move(left), parse_unary(true));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    const Pos pos = current().pos;
    Nesting nesting(*this, pos);
    ExprPtr e;
    if (at_op("-")) {
      ++i_;
      e = unary(ExprKind::Negate, pos, parse_unary(false));
    } else if (at_op("+")) {
      ++i_;
      e = unary(ExprKind::Plus, pos, parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr literal(Pos pos, Value value) {
    auto e = node(ExprKind::Literal, pos);
    e->literal = std::move(value);
    return finish(std::move(e));
  }

  ExprPtr parse_primary() {
    const Token& token = current();
    const Pos pos = token.pos;
    switch (token.type) {
      case TokenType::Name: {
        ++i_;
        if (token.text == "true" || token.text == "True") return literal(pos, Value::boolean(true));
        if (token.text == "false" || token.text == "False") return literal(pos, Value::boolean(false));
        if (token.text == "none" || token.text == "None") return literal(pos, Value::none());
        auto e = node(ExprKind::Name, pos);
        e->name = token.text;
        return finish(std::move(e));
      }
      case TokenType::String: {
        std::string text;
        while (at(TokenType::String)) text += next().text;  // adjacent literals concatenate
        return literal(pos, Value::string(std::move(text)));
      }
      case TokenType::Integer:
        ++i_;
        return literal(pos, Value::integer(token.integer));
      case TokenType::Float:
        ++i_;
        return literal(pos, Value::number(token.number));
      case TokenType::Operator:
        if (token.text == "(") {
          ++i_;
          ExprPtr e = parse_tuple(true, {}, true);
          expect_op(")");
          return e;
        }
        if (token.text == "[" || token.text == "{") return parse_collection(token.text == "{");
        break;
      default:
        break;
    }
    error(pos, fmt::format("unexpected {}", describe(token)));
  }

  ExprPtr parse_collection(bool dict) {
    const Pos pos = next().pos;
    auto e = node(dict ? ExprKind::Dict : ExprKind::List, pos);
    const std::string_view close = dict ? "}" : "]";
    while (!at_op(close)) {
      if (!e->args.empty()) {
        expect_op(",");
        if (at_op(close)) break;
      }
      e->args.push_back(parse_expression(true));
      if (dict) {
        expect_op(":");
        e->args.push_back(parse_expression(true));
      }
    }
    ++i_;
    return finish(std::move(e));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (at_op(".")) {
        const Pos pos = next().pos;
        if (at(TokenType::Integer)) {
          const Token& index = next();
          auto item = node(ExprKind::Item, pos);
          item->args.push_back(std::move(e));
          item->args.push_back(literal(index.pos, Value::integer(index.integer)));
          e = finish(std::move(item));
        } else {
          auto attribute = node(ExprKind::Attribute, pos);
          attribute->name = expect_name();
          attribute->args.push_back(std::move(e));
          e = finish(std::move(attribute));
        }
      } else if (at_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (at_op("(")) {
        auto call = node(ExprKind::Call, current().pos);
        call->args.push_back(std::move(e));
        parse_call_args(*call);
        e = finish(std::move(call));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr subject) {
    const Pos pos = next().pos;  // "["
    std::vector<ExprPtr> parts;  // start, stop, step
    bool slice = false;
    auto part = [&]() -> ExprPtr { return at_op(":") || at_op("]") ? nullptr : parse_expression(true); };
    parts.push_back(part());
    while (at_op(":") && parts.size() < 3) {
      ++i_;
      slice = true;
      parts.push_back(part());
    }
    if (at_op(",")) error(current().pos, "tuple subscripts are not supported");
    expect_op("]");
    auto e = node(slice ? ExprKind::Slice : ExprKind::Item, pos);
    e->args.push_back(std::move(subject));
    if (!slice && !parts[0]) error(pos, "expected an index");
    for (auto& p : parts) e->args.push_back(std::move(p));
    while (slice && e->args.size() < 4) e->args.push_back(nullptr);
    return finish(std::move(e));
  }

  // "(" arguments ")" appended to e.args, keyword arguments last (names in e.kwarg_names).
  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!at_op(")")) {
      if (!first) {
        expect_op(",");
        if (at_op(")")) break;
      }
      first = false;
      if (at_op("*") || at_op("**")) error(current().pos, "*args and **kwargs in calls are not supported");
      if (at(TokenType::Name) && i_ + 1 < tokens_.size() && tokens_[i_ + 1].type == TokenType::Operator &&
          tokens_[i_ + 1].text == "=") {
        const Token& name = next();
        if (std::find(e.kwarg_names.begin(), e.kwarg_names.end(), name.text) != e.kwarg_names.end()) {
          error(name.pos, fmt::format("keyword argument repeated: {}", name.text));
        }
        e.kwarg_names.push_back(name.text);
        ++i_;
        e.args.push_back(parse_expression(true));
      } else {
        if (!e.kwarg_names.empty()) error(current().pos, "a positional argument follows a keyword argument");
        e.args.push_back(parse_expression(true));
      }
    }
    ++i_;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (at_op("|")) {
        ++i_;
        const Token& name = current();
        auto filter = node(ExprKind::Filter, name.pos);
        filter->name = expect_name();
        if (at_op(".")) error(current().pos, "dotted filter names are not supported");
        if (!filter_supported(filter->name)) error(name.pos, unsupported_filter_message(filter->name));
        filter->args.push_back(std::move(e));
        if (at_op("(")) parse_call_args(*filter);
        e = finish(std::move(filter));
      } else if (at_name("is")) {
        ++i_;
        auto test = node(ExprKind::Test, current().pos);
        if (at_name("not")) {
          ++i_;
          test->negated = true;
        }
        const Token& name = current();
        test->name = expect_name();
        if (!test_supported(test->name)) error(name.pos, unsupported_test_message(test->name));
        test->args.push_back(std::move(e));
        if (at_op("(")) {
          parse_call_args(*test);
        } else if ((at(TokenType::Name) || at(TokenType::String) || at(TokenType::Integer) ||
                    at(TokenType::Float) || at_op("[") || at_op("{")) &&
                   !at_name("else") && !at_name("or") && !at_name("and")) {
          if (at_name("is")) error(current().pos, "tests cannot be chained with 'is'");
          test->args.push_back(parse_postfix(parse_primary()));
        }
        e = finish(std::move(test));
      } else if (at_op("(")) {
        auto call = node(ExprKind::Call, current().pos);
        call->args.push_back(std::move(e));
        parse_call_args(*call);
        e = finish(std::move(call));
      } else {
        return e;
      }
    }
  }

  const std::vector<Token>& tokens_;
  std::string_view name_;
  const Limits& limits_;
  size_t i_ = 0;
  size_t nesting_ = 0;
  size_t loop_depth_ = 0;
};

}  // namespace

Program parse_tokens(const std::vector<Token>& tokens, std::string_view name, const Limits& limits) {
  return Parser(tokens, name, limits).run();
}

}  // namespace qllm::jinja
