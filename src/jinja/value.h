// The dynamic value of the chat-template interpreter: what a Jinja expression evaluates to, with Python's
// semantics as Jinja2 (under transformers) gives them: undefined, None, bool, int, float, str, list / tuple
// (and the dict views and range objects that print differently), dict (insertion-ordered), namespace and
// loop objects, and callables. Lists and dicts are immutable once built (transformers renders in an
// ImmutableSandboxedEnvironment); a namespace is the one mutable object, shared by reference as in Python.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace qllm::jinja {

class Value;

enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Object, Callable };

// How a sequence prints and behaves: Python's list, tuple, dict views, range, and the one-shot
// iterators (generators) that select, map, unique, items and reverse return: always true, no len(), not
// printable, not subscriptable, and usable once.
enum class ListForm { List, Tuple, DictItems, DictKeys, DictValues, Range, Generator };

// Containers nest at most this deep (so printing, comparing and destroying them cannot exhaust the
// stack), and never hold a namespace or loop object (so no reference cycle can form).
inline constexpr size_t kMaxValueDepth = 128;

struct ListData {
  std::vector<Value> items;
  ListForm form = ListForm::List;
  size_t depth = 1;
  mutable bool consumed = false;  // a Generator that was iterated
};

struct DictData {
  std::vector<std::pair<Value, Value>> items;  // insertion order, keys unique (Python equality)
  size_t depth = 1;                            // set by Value::dict
  const Value* find(const Value& key) const;
  // Sets `key` (replacing an equal key's value in place, as a Python dict does).
  void set(Value key, Value value);
};

// namespace() objects (mutable through `{% set ns.x = ... %}`) and the read-only `loop` of a for loop.
struct ObjectData {
  enum class Type { Namespace, Loop };
  Type type = Type::Namespace;
  std::vector<std::pair<std::string, Value>> attributes;
  const Value* find(std::string_view name) const;
  void set(std::string_view name, Value value);
};

// Something a template can call: a builtin function, a macro or a bound method. The evaluator knows
// the concrete types; values only carry them.
class Callable {
 public:
  virtual ~Callable() = default;
  virtual std::string describe() const = 0;  // for error messages: "macro 'm'", "method str.split"
};

class Value {
 public:
  Value() : kind_(Kind::Undefined) {}  // undefined, with no name

  static Value undefined(std::string hint) { return Value(Kind::Undefined, std::move(hint)); }
  static Value none() { return Value(Kind::None, std::monostate{}); }
  static Value boolean(bool b) { return Value(Kind::Bool, b); }
  static Value integer(int64_t i) { return Value(Kind::Int, i); }
  static Value number(double d) { return Value(Kind::Float, d); }
  static Value string(std::string s) { return Value(Kind::String, std::move(s)); }
  // Throw a qllm::Error for containers deeper than kMaxValueDepth or holding a namespace / loop object.
  static Value list(std::vector<Value> items, ListForm form = ListForm::List);
  static Value dict(DictData data);
  static Value object(std::shared_ptr<ObjectData> object) { return Value(Kind::Object, std::move(object)); }
  static Value callable(std::shared_ptr<const Callable> c) { return Value(Kind::Callable, std::move(c)); }

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_string() const { return kind_ == Kind::String; }
  // int, float or bool (a Python bool is an int).
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_dict() const { return kind_ == Kind::Dict; }

  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const;   // Int or Bool
  double as_float() const;  // Int, Bool or Float
  const std::string& as_string() const { return std::get<std::string>(data_); }
  const ListData& as_list() const { return *std::get<std::shared_ptr<const ListData>>(data_); }
  const DictData& as_dict() const { return *std::get<std::shared_ptr<const DictData>>(data_); }
  ObjectData& as_object() const { return *std::get<std::shared_ptr<ObjectData>>(data_); }
  // Nesting depth of a container (1 for a flat list), 0 for other values.
  size_t depth() const;
  const std::shared_ptr<const Callable>& as_callable() const {
    return std::get<std::shared_ptr<const Callable>>(data_);
  }
  // For an undefined value: what was looked up ("'x' is undefined", "'dict object' has no attribute
  // 'y'"), Jinja2's UndefinedError message when it is used.
  std::string undefined_message() const;

  // Python's bool(value).
  bool truthy() const;
  // Whether two values are the same object (namespaces, callables) for Python `==` on those kinds.
  bool same_object(const Value& other) const;

 private:
  using Data = std::variant<std::monostate, bool, int64_t, double, std::string,
                            std::shared_ptr<const ListData>, std::shared_ptr<const DictData>,
                            std::shared_ptr<ObjectData>, std::shared_ptr<const Callable>>;
  Value(Kind kind, Data data) : kind_(kind), data_(std::move(data)) {}
  Kind kind_;
  Data data_;
};

// Python's type name ("str", "int", "dict", "NoneType", ...), for error messages.
std::string type_name(const Value& value);

// Python's `a == b` (1 == 1.0 == True; a tuple never equals a list; undefined equals only undefined).
bool equal(const Value& a, const Value& b);

// Python's ordering for <, <=, >, >=: -1, 0 or 1. Throws qllm::Error (without position; the evaluator
// adds it) for values Python cannot order ("'<' not supported between instances of 'str' and 'int'").
int compare(const Value& a, const Value& b, std::string_view op);

// Python's str(value): what {{ value }} prints. Undefined prints "". Throws for values whose Python
// string is an address (functions, macros).
std::string to_str(const Value& value);

// Python's repr(value) (strings quoted and escaped as Python does).
std::string to_repr(const Value& value);

// Python's repr(float): the shortest string that reads back the same double ("0.1", "1e+16", "1.5e-05").
std::string float_repr(double value);

// Whether a value may be a dict key (Python's hashable types). Throws a qllm::Error otherwise.
void check_hashable(const Value& key);

}  // namespace qllm::jinja
