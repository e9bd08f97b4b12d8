// The syntax tree of a parsed chat template: expressions and statements, each with its source position.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "jinja/lexer.h"
#include "jinja/value.h"

namespace qllm::jinja {

enum class ExprKind {
  Literal,      // literal
  Name,         // name
  List,         // args: items
  Tuple,        // args: items
  Dict,         // args: key, value, key, value, ...
  Not,          // args[0]
  Negate,       // args[0]
  Plus,         // args[0] (unary +)
  Binary,       // op, args[0], args[1]
  And,          // args[0], args[1]
  Or,           // args[0], args[1]
  Concat,       // args: the operands of a ~ b ~ c
  Compare,      // compare_ops[i] between args[i] and args[i + 1] (chained as in Python)
  Conditional,  // args: value, condition, else value (nullptr: undefined)
  Attribute,    // args[0].name
  Item,         // args[0][args[1]]
  Slice,        // args[0][args[1]:args[2]:args[3]], absent parts nullptr
  Call,         // args[0](args[1..]); the last kwarg_names.size() arguments are keyword arguments
  Filter,       // args[0] | name(args[1..]), keyword arguments as for Call
  Test,         // args[0] is [not] name(args[1..])
};

enum class BinaryOp { Add, Sub, Mul, Div, FloorDiv, Mod, Pow };
enum class CompareOp { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };

struct Expr {
  ExprKind kind;
  Pos pos;
  Value literal;
  std::string name;
  BinaryOp op = BinaryOp::Add;
  std::vector<CompareOp> compare_ops;
  bool negated = false;  // Test: "is not"
  std::vector<std::unique_ptr<Expr>> args;
  std::vector<std::string> kwarg_names;
  size_t depth = 1;  // 1 + the deepest argument: bounds the evaluator's recursion
};
using ExprPtr = std::unique_ptr<Expr>;

enum class StmtKind { Text, Print, If, For, Set, SetBlock, Macro, Break, Continue, Block };

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  StmtKind kind;
  Pos pos;
  std::string text;                                // Text
  ExprPtr expr;                                    // Print and Set: the value; For: the iterable
  std::vector<std::string> targets;                // For / Set / SetBlock / Macro: assigned names
  bool attribute_target = false;                   // Set: targets = {namespace, attribute}
  ExprPtr filter;                                  // For: the "if" condition, or nullptr
  std::vector<std::pair<ExprPtr, Body>> branches;  // If: (condition, body) for if and each elif
  Body body;                                       // For / SetBlock / Macro / Block
  Body else_body;                                  // If / For
  std::vector<std::string> params;                 // Macro
  std::vector<ExprPtr> defaults;                   // Macro: defaults of the last params
};

}  // namespace qllm::jinja
