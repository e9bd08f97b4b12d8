// The chat-template evaluator (see evaluator.h).
#include "jinja/evaluator.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "jinja/builtins.h"
#include "qllm/error.h"

namespace qllm::jinja {

namespace {

// An error already prefixed with its template position: passed through as it is.
class PositionedError : public Error {
 public:
  using Error::Error;
};

// A macro sees its arguments and, as a closure, the scope it was defined in (at call time).
class Macro : public Callable {
 public:
  Macro(const Stmt& definition, size_t scope, uint64_t scope_id)
      : definition(definition), scope(scope), scope_id(scope_id) {}
  std::string describe() const override { return "macro '" + definition.targets[0] + "'"; }
  const Stmt& definition;
  size_t scope;       // index of the defining scope in the evaluator's stack
  uint64_t scope_id;  // ... and its id, to notice that scope having ended
};

void check_no_overflow(bool overflow) {
  QLLM_CHECK(!overflow, "integer overflow (qllm's integers are 64-bit)");
}

[[noreturn]] void unsupported_operands(std::string_view op, const Value& a, const Value& b) {
  if (a.is_undefined()) fail("{}", a.undefined_message());
  if (b.is_undefined()) fail("{}", b.undefined_message());
  fail("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(a), type_name(b));
}

Value repeat(const Value& sequence, int64_t times, Budget& budget) {
  const size_t n = times < 0 ? 0 : static_cast<size_t>(times);
  if (sequence.is_string()) {
    const std::string& s = sequence.as_string();
    QLLM_CHECK(s.empty() || n <= budget.limits().max_output_bytes / s.size(),
               "a repeated string would exceed {} bytes", budget.limits().max_output_bytes);
    std::string out;
    for (size_t i = 0; i < n; ++i) out += s;
    return Value::string(std::move(out));
  }
  const auto& items = sequence.as_list().items;
  QLLM_CHECK(items.empty() || n <= budget.limits().max_output_bytes / (items.size() * sizeof(Value)),
             "a repeated list would exceed {} bytes", budget.limits().max_output_bytes);
  std::vector<Value> out;
  for (size_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::list(std::move(out), sequence.as_list().form);
}

double python_float_mod(double a, double b) {
  double mod = std::fmod(a, b);
  if (mod != 0.0) {
    if ((b < 0) != (mod < 0)) mod += b;
  } else {
    mod = std::copysign(0.0, b);
  }
  return mod;
}

double python_float_floordiv(double a, double b) {
  const double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0.0 && ((b < 0) != (mod < 0))) div -= 1.0;
  if (div == 0.0) return std::copysign(0.0, a / b);
  const double floor = std::floor(div);
  return div - floor > 0.5 ? floor + 1.0 : floor;
}

double float_pow(double x, double y) {
  QLLM_CHECK(!(x == 0.0 && y < 0), "0.0 cannot be raised to a negative power");
  QLLM_CHECK(x >= 0 || std::floor(y) == y, "a negative number raised to a fractional power is complex");
  const double result = std::pow(x, y);
  QLLM_CHECK(std::isfinite(result) || !std::isfinite(x) || !std::isfinite(y),
             "Numerical result out of range");
  return result;
}

Value arithmetic(BinaryOp op, const Value& a, const Value& b, Budget& budget) {
  static constexpr std::string_view kSymbols[] = {"+", "-", "*", "/", "//", "%", "**"};
  const std::string_view symbol = kSymbols[static_cast<int>(op)];
  if (a.is_number() && b.is_number()) {
    const bool floats = a.kind() == Kind::Float || b.kind() == Kind::Float;
    if (op == BinaryOp::Div || floats) {
      const double x = a.as_float();
      const double y = b.as_float();
      if (op == BinaryOp::Div || op == BinaryOp::FloorDiv || op == BinaryOp::Mod) {
        QLLM_CHECK(y != 0.0, "division by zero");
      }
      switch (op) {
        case BinaryOp::Add:
          return Value::number(x + y);
        case BinaryOp::Sub:
          return Value::number(x - y);
        case BinaryOp::Mul:
          return Value::number(x * y);
        case BinaryOp::Div:
          return Value::number(x / y);
        case BinaryOp::FloorDiv:
          return Value::number(python_float_floordiv(x, y));
        case BinaryOp::Mod:
          return Value::number(python_float_mod(x, y));
        case BinaryOp::Pow:
          return Value::number(float_pow(x, y));
      }
    }
    const int64_t x = a.as_int();
    const int64_t y = b.as_int();
    int64_t r = 0;
    switch (op) {
      case BinaryOp::Add:
        check_no_overflow(__builtin_add_overflow(x, y, &r));
        return Value::integer(r);
      case BinaryOp::Sub:
        check_no_overflow(__builtin_sub_overflow(x, y, &r));
        return Value::integer(r);
      case BinaryOp::Mul:
        check_no_overflow(__builtin_mul_overflow(x, y, &r));
        return Value::integer(r);
      case BinaryOp::FloorDiv:
      case BinaryOp::Mod: {
        QLLM_CHECK(y != 0, "integer division or modulo by zero");
        QLLM_CHECK(!(x == INT64_MIN && y == -1), "integer overflow (qllm's integers are 64-bit)");
        int64_t q = x / y;
        int64_t m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
          --q;
          m += y;
        }
        return Value::integer(op == BinaryOp::FloorDiv ? q : m);
      }
      case BinaryOp::Pow: {
        if (y < 0) return Value::number(float_pow(a.as_float(), b.as_float()));
        // Exponentiation by squaring; a square that overflows while bits remain means the result does.
        int64_t result = 1;
        int64_t base = x;
        for (uint64_t e = static_cast<uint64_t>(y); e != 0; e >>= 1) {
          if (e & 1) check_no_overflow(__builtin_mul_overflow(result, base, &result));
          if (e > 1) check_no_overflow(__builtin_mul_overflow(base, base, &base));
        }
        return Value::integer(result);
      }
      case BinaryOp::Div:
        break;
    }
  }
  if (op == BinaryOp::Add && a.is_string() && b.is_string()) {
    budget.check_size(a.as_string().size() + b.as_string().size());
    return Value::string(a.as_string() + b.as_string());
  }
  if (op == BinaryOp::Add && a.is_list() && b.is_list() && a.as_list().form == b.as_list().form &&
      (a.as_list().form == ListForm::List || a.as_list().form == ListForm::Tuple)) {
    std::vector<Value> items = a.as_list().items;
    items.insert(items.end(), b.as_list().items.begin(), b.as_list().items.end());
    budget.check_size(items.size() * sizeof(Value));
    return Value::list(std::move(items), a.as_list().form);
  }
  if (op == BinaryOp::Mul) {
    const auto repeatable = [](const Value& v) {
      return v.is_string() ||
             (v.is_list() && (v.as_list().form == ListForm::List || v.as_list().form == ListForm::Tuple));
    };
    const auto integral = [](const Value& v) { return v.kind() == Kind::Int || v.kind() == Kind::Bool; };
    if (repeatable(a) && integral(b)) return repeat(a, b.as_int(), budget);
    if (integral(a) && repeatable(b)) return repeat(b, a.as_int(), budget);
  }
  QLLM_CHECK(!(op == BinaryOp::Mod && a.is_string()), "string formatting with '%' is not supported");
  unsupported_operands(symbol, a, b);
}

class Evaluator {
 public:
  Evaluator(std::string_view name, const Limits& limits, const Context& context)
      : name_(name), limits_(limits), budget_(limits) {
    push_scope(kNoParent);
    for (const char* global : {"range", "namespace", "dict", "raise_exception", "strftime_now"}) {
      scopes_[0].vars[global] = Value::callable(std::make_shared<GlobalFunction>(global));
    }
    push_scope(0);
    scopes_[1].vars.insert(context.begin(), context.end());
  }

  std::string run(const Program& program) {
    std::string out;
    out_ = &out;
    exec_body(program.body);
    return out;
  }

 private:
  // Variables of a block; lookups go on to the lexical parent (for a macro: where it was defined).
  struct Scope {
    std::unordered_map<std::string, Value> vars;
    size_t parent;
    uint64_t id;
  };
  static constexpr size_t kNoParent = SIZE_MAX;
  enum class Flow { Normal, Break, Continue };

  void push_scope(size_t parent) { scopes_.push_back(Scope{{}, parent, next_scope_id_++}); }
  void push_block_scope() { push_scope(scopes_.size() - 1); }
  std::unordered_map<std::string, Value>& top() { return scopes_.back().vars; }

  // Counts one level of evaluation depth while it lives.
  class Depth {
   public:
    Depth(Evaluator& evaluator, Pos pos) : evaluator_(evaluator) {
      if (++evaluator_.depth_ > evaluator_.limits_.max_depth) {
        throw PositionedError(fmt::format("{}: evaluation nested deeper than {} levels",
                                          where(evaluator_.name_, pos), evaluator_.limits_.max_depth));
      }
    }
    ~Depth() { --evaluator_.depth_; }
    Depth(const Depth&) = delete;
    Depth& operator=(const Depth&) = delete;

   private:
    Evaluator& evaluator_;
  };

  // Runs f(), giving a qllm::Error from it the position `pos`.
  template <typename F>
  auto at(Pos pos, F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const PositionedError&) {
      throw;
    } catch (const Error& e) {
      throw PositionedError(fmt::format("{}: {}", where(name_, pos), e.what()));
    }
  }

  void write(std::string_view text, Pos pos) {
    at(pos, [&] { budget_.check_size(out_->size() + text.size()); });
    out_->append(text);
  }

  const Value* lookup(const std::string& name) const {
    for (size_t i = scopes_.size() - 1; i != kNoParent; i = scopes_[i].parent) {
      const auto it = scopes_[i].vars.find(name);
      if (it != scopes_[i].vars.end()) return &it->second;
    }
    return nullptr;
  }

  // ---- expressions ----

  Value eval(const Expr& e) {
    Depth depth(*this, e.pos);
    return at(e.pos, [&] { return eval_node(e); });
  }

  Value eval_node(const Expr& e) {
    switch (e.kind) {
      case ExprKind::Literal:
        return e.literal;
      case ExprKind::Name: {
        const Value* v = lookup(e.name);
        return v != nullptr ? *v : Value::undefined(fmt::format("'{}' is undefined", e.name));
      }
      case ExprKind::List:
      case ExprKind::Tuple: {
        std::vector<Value> items;
        for (const auto& arg : e.args) items.push_back(eval(*arg));
        return Value::list(std::move(items), e.kind == ExprKind::Tuple ? ListForm::Tuple : ListForm::List);
      }
      case ExprKind::Dict: {
        DictData dict;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value key = eval(*e.args[i]);
          check_hashable(key);
          dict.set(std::move(key), eval(*e.args[i + 1]));
        }
        return Value::dict(std::move(dict));
      }
      case ExprKind::Not:
        return Value::boolean(!eval(*e.args[0]).truthy());
      case ExprKind::Negate:
      case ExprKind::Plus: {
        const Value v = eval(*e.args[0]);
        if (v.is_undefined()) fail("{}", v.undefined_message());
        QLLM_CHECK(v.is_number(), "bad operand type for unary {}: '{}'",
                   e.kind == ExprKind::Negate ? '-' : '+', type_name(v));
        if (e.kind == ExprKind::Plus) return v.kind() == Kind::Float ? v : Value::integer(v.as_int());
        if (v.kind() == Kind::Float) return Value::number(-v.as_float());
        QLLM_CHECK(v.as_int() != INT64_MIN, "integer overflow (qllm's integers are 64-bit)");
        return Value::integer(-v.as_int());
      }
      case ExprKind::Binary: {
        const Value a = eval(*e.args[0]);
        const Value b = eval(*e.args[1]);
        return arithmetic(e.op, a, b, budget_);
      }
      case ExprKind::And:
      case ExprKind::Or: {
        Value left = eval(*e.args[0]);
        if (left.truthy() == (e.kind == ExprKind::Or)) return left;
        return eval(*e.args[1]);
      }
      case ExprKind::Concat: {
        std::string out;
        for (const auto& arg : e.args) {
          out += to_str(eval(*arg));
          budget_.check_size(out.size());
        }
        return Value::string(std::move(out));
      }
      case ExprKind::Compare:
        return Value::boolean(eval_compare(e));
      case ExprKind::Conditional:
        if (eval(*e.args[1]).truthy()) return eval(*e.args[0]);
        if (e.args[2]) return eval(*e.args[2]);
        return Value::undefined(
            "the inline if-expression evaluated to false and no else section was defined");
      case ExprKind::Attribute:
        return get_attribute(eval(*e.args[0]), e.name);
      case ExprKind::Item: {
        const Value object = eval(*e.args[0]);
        return get_item(object, eval(*e.args[1]));
      }
      case ExprKind::Slice: {
        const Value object = eval(*e.args[0]);
        auto part = [&](size_t i) { return e.args[i] ? eval(*e.args[i]) : Value::none(); };
        const Value start = part(1);
        const Value stop = part(2);
        const Value step = part(3);
        return get_slice(budget_, object, start, stop, step);
      }
      case ExprKind::Call:
        return eval_call(e);
      case ExprKind::Filter: {
        const Value subject = eval(*e.args[0]);
        return apply_filter(budget_, e.name, subject, eval_args(e, 1));
      }
      case ExprKind::Test: {
        const Value subject = eval(*e.args[0]);
        return Value::boolean(apply_test(budget_, e.name, subject, eval_args(e, 1)) != e.negated);
      }
    }
    fail("unknown expression");
  }

  bool eval_compare(const Expr& e) {
    Value left = eval(*e.args[0]);
    for (size_t i = 0; i < e.compare_ops.size(); ++i) {
      Value right = eval(*e.args[i + 1]);
      const CompareOp op = e.compare_ops[i];
      bool result = false;
      if (op == CompareOp::Eq || op == CompareOp::Ne) {
        result = equal(left, right) == (op == CompareOp::Eq);
      } else if (op == CompareOp::In || op == CompareOp::NotIn) {
        result = contains(right, left) == (op == CompareOp::In);
      } else {
        if (left.is_undefined()) fail("{}", left.undefined_message());
        if (right.is_undefined()) fail("{}", right.undefined_message());
        static constexpr std::string_view kSymbols[] = {"==", "!=", "<", "<=", ">", ">="};
        const std::string_view symbol = kSymbols[static_cast<int>(op)];
        const int c = compare(left, right, symbol);
        const bool nan = (left.kind() == Kind::Float && std::isnan(left.as_float())) ||
                         (right.kind() == Kind::Float && std::isnan(right.as_float()));
        result = !nan && (op == CompareOp::Lt   ? c < 0
                          : op == CompareOp::Le ? c <= 0
                          : op == CompareOp::Gt ? c > 0
                                                : c >= 0);
      }
      if (!result) return false;
      left = std::move(right);
    }
    return true;
  }

  // The arguments of a call, filter or test from e.args[first] on.
  CallArgs eval_args(const Expr& e, size_t first) {
    CallArgs args;
    const size_t keyword_start = e.args.size() - e.kwarg_names.size();
    for (size_t i = first; i < e.args.size(); ++i) {
      Value v = eval(*e.args[i]);
      if (i < keyword_start) {
        args.positional.push_back(std::move(v));
      } else {
        args.keyword.emplace_back(e.kwarg_names[i - keyword_start], std::move(v));
      }
    }
    return args;
  }

  Value eval_call(const Expr& e) {
    const Value callee = eval(*e.args[0]);
    CallArgs args = eval_args(e, 1);
    if (callee.is_undefined()) fail("{}", callee.undefined_message());
    QLLM_CHECK(callee.kind() == Kind::Callable, "'{}' object is not callable", type_name(callee));
    const Callable* c = callee.as_callable().get();
    if (const auto* method = dynamic_cast<const BoundMethod*>(c))
      return call_method(budget_, *method, std::move(args));
    if (const auto* global = dynamic_cast<const GlobalFunction*>(c))
      return call_global(budget_, *global, std::move(args));
    const auto* macro = dynamic_cast<const Macro*>(c);
    QLLM_CHECK(macro != nullptr, "{} cannot be called", c->describe());
    return call_macro(*macro, std::move(args));
  }

  Value call_macro(const Macro& macro, CallArgs args) {
    budget_.step();
    const Stmt& def = macro.definition;
    QLLM_CHECK(args.positional.size() <= def.params.size(), "macro '{}' takes not more than {} argument(s)",
               def.targets[0], def.params.size());
    QLLM_CHECK(macro.scope < scopes_.size() && scopes_[macro.scope].id == macro.scope_id,
               "macro '{}' called after the block that defined it ended is not supported", def.targets[0]);
    std::unordered_map<std::string, Value> frame;
    for (size_t i = 0; i < args.positional.size(); ++i) frame[def.params[i]] = std::move(args.positional[i]);
    for (auto& [name, value] : args.keyword) {
      QLLM_CHECK(std::find(def.params.begin(), def.params.end(), name) != def.params.end(),
                 "macro '{}' has no argument named '{}'", def.targets[0], name);
      QLLM_CHECK(!frame.count(name), "macro '{}' got multiple values for argument '{}'", def.targets[0],
                 name);
      frame[name] = std::move(value);
    }
    const size_t frame_index = scopes_.size();
    std::string* saved_out = out_;
    std::string output;
    push_scope(macro.scope);
    top() = std::move(frame);
    out_ = &output;
    auto restore = [&] {
      scopes_.resize(frame_index);
      out_ = saved_out;
    };
    try {
      // Defaults are evaluated at call time, in the macro's scope (they may use earlier arguments).
      const size_t first_default = def.params.size() - def.defaults.size();
      for (size_t i = first_default; i < def.params.size(); ++i) {
        if (!top().count(def.params[i])) {
          Value v = eval(*def.defaults[i - first_default]);
          top()[def.params[i]] = std::move(v);
        }
      }
      exec_body(def.body);
    } catch (...) {
      restore();
      throw;
    }
    restore();
    return Value::string(std::move(output));
  }

  // ---- statements ----

  Flow exec_body(const Body& body) {
    for (const auto& stmt : body) {
      const Flow flow = exec(*stmt);
      if (flow != Flow::Normal) return flow;
    }
    return Flow::Normal;
  }

  Flow exec(const Stmt& s) {
    Depth depth(*this, s.pos);
    at(s.pos, [&] { budget_.step(); });
    switch (s.kind) {
      case StmtKind::Text:
        write(s.text, s.pos);
        return Flow::Normal;
      case StmtKind::Print: {
        const Value v = eval(*s.expr);
        write(at(s.expr->pos, [&] { return to_str(v); }), s.pos);
        return Flow::Normal;
      }
      case StmtKind::If:
        for (const auto& [condition, body] : s.branches) {
          if (eval(*condition).truthy()) return exec_body(body);
        }
        return exec_body(s.else_body);
      case StmtKind::For:
        return exec_for(s);
      case StmtKind::Set:
        exec_set(s);
        return Flow::Normal;
      case StmtKind::SetBlock: {
        std::string captured;
        std::string* saved = out_;
        out_ = &captured;
        try {
          exec_body(s.body);
        } catch (...) {
          out_ = saved;
          throw;
        }
        out_ = saved;
        top()[s.targets[0]] = Value::string(std::move(captured));
        return Flow::Normal;
      }
      case StmtKind::Macro:
        top()[s.targets[0]] =
            Value::callable(std::make_shared<Macro>(s, scopes_.size() - 1, scopes_.back().id));
        return Flow::Normal;
      case StmtKind::Break:
        return Flow::Break;
      case StmtKind::Continue:
        return Flow::Continue;
      case StmtKind::Block:
        return exec_body(s.body);
    }
    return Flow::Normal;
  }

  // Binds `value` to the names (unpacking it when there are several) in `scope`.
  void assign(std::unordered_map<std::string, Value>& scope, const std::vector<std::string>& names,
              const Value& value, Pos pos) {
    if (names.size() == 1) {
      scope[names[0]] = value;
      return;
    }
    const std::vector<Value> items = at(pos, [&] { return iterate(value); });
    at(pos, [&] {
      QLLM_CHECK(items.size() == names.size(), "{} values to unpack (expected {}, got {})",
                 items.size() > names.size() ? "too many" : "not enough", names.size(), items.size());
    });
    for (size_t i = 0; i < names.size(); ++i) scope[names[i]] = items[i];
  }

  void exec_set(const Stmt& s) {
    const Value value = eval(*s.expr);
    if (!s.attribute_target) {
      assign(top(), s.targets, value, s.pos);
      return;
    }
    at(s.pos, [&] {
      const Value* ns = lookup(s.targets[0]);
      QLLM_CHECK(
          ns != nullptr && ns->kind() == Kind::Object && ns->as_object().type == ObjectData::Type::Namespace,
          "cannot assign attribute on non-namespace object '{}'", s.targets[0]);
      QLLM_CHECK(!s.targets[1].starts_with("_"), "namespace attribute '{}' is refused (underscore prefix)",
                 s.targets[1]);
      ns->as_object().set(s.targets[1], value);
    });
  }

  Flow exec_for(const Stmt& s) {
    const Value iterable = eval(*s.expr);
    std::vector<Value> all = at(s.expr->pos, [&] {
      QLLM_CHECK(!iterable.is_none(), "'NoneType' object is not iterable");
      return iterate(iterable);
    });
    std::vector<Value> items;
    if (s.filter) {
      for (Value& item : all) {
        at(s.pos, [&] { budget_.step(); });
        push_block_scope();
        assign(top(), s.targets, item, s.pos);
        bool keep = false;
        try {
          keep = eval(*s.filter).truthy();
        } catch (...) {
          scopes_.pop_back();
          throw;
        }
        scopes_.pop_back();
        if (keep) items.push_back(std::move(item));
      }
    } else {
      items = std::move(all);
    }
    const size_t scope_index = scopes_.size();
    Flow flow = Flow::Normal;
    try {
      for (size_t i = 0; i < items.size() && flow != Flow::Break; ++i) {
        at(s.pos, [&] { budget_.step(); });
        push_block_scope();
        assign(top(), s.targets, items[i], s.pos);
        top()["loop"] = loop_object(items, i);
        flow = exec_body(s.body);
        scopes_.pop_back();
      }
      if (items.empty()) {
        push_block_scope();
        exec_body(s.else_body);
        scopes_.pop_back();
      }
    } catch (...) {
      scopes_.resize(scope_index);
      throw;
    }
    return Flow::Normal;
  }

  static Value loop_object(const std::vector<Value>& items, size_t i) {
    const auto n = static_cast<int64_t>(items.size());
    const auto index = static_cast<int64_t>(i);
    auto loop = std::make_shared<ObjectData>();
    loop->type = ObjectData::Type::Loop;
    loop->set("index", Value::integer(index + 1));
    loop->set("index0", Value::integer(index));
    loop->set("revindex", Value::integer(n - index));
    loop->set("revindex0", Value::integer(n - index - 1));
    loop->set("first", Value::boolean(i == 0));
    loop->set("last", Value::boolean(index == n - 1));
    loop->set("length", Value::integer(n));
    loop->set("depth", Value::integer(1));
    loop->set("depth0", Value::integer(0));
    loop->set("previtem", i > 0 ? items[i - 1] : Value::undefined("there is no previous item"));
    loop->set("nextitem", index + 1 < n ? items[i + 1] : Value::undefined("there is no next item"));
    return Value::object(std::move(loop));
  }

  std::string_view name_;
  const Limits& limits_;
  Budget budget_;
  std::vector<Scope> scopes_;  // [0] globals, [1] the context and template-level variables, then blocks
  uint64_t next_scope_id_ = 0;
  size_t depth_ = 0;
  std::string* out_ = nullptr;
};

}  // namespace

std::string evaluate(const Program& program, std::string_view name, const Limits& limits,
                     const Context& context) {
  return Evaluator(name, limits, context).run(program);
}

}  // namespace qllm::jinja
