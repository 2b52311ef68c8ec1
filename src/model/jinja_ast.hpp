#pragma once
// The syntax tree of a parsed chat template. One node type per level (expression, statement) with a
// kind tag keeps the parser and interpreter short; the fields a kind uses are listed beside it.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/jinja_value.hpp"

namespace llmd::model::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,  // value
    Name,     // name
    List,     // args (tuples too)
    Dict,     // args: key, value, key, value...
    Attr,     // args[0].name
    Item,     // args[0][args[1]]
    Slice,    // args[0][args[1]:args[2]:args[3]], any of 1..3 may be null
    Call,     // args[0](args[1..], kwargs)
    Filter,   // args[0] | name(args[1..], kwargs)
    Test,     // args[0] is [not] name(args[1..])  (negate)
    Unary,    // name ("-", "+", "not") args[0]
    Binary,   // args[0] name args[1]: + - * / // % ** ~ and or
    Compare,  // args[0] ops[0] args[1] ops[1] args[2]...: == != < <= > >= in notin
    Cond,     // args[1] if args[0] else args[2] (args[2] may be null)
  };
  Kind kind;
  int line = 0, col = 0;
  std::string name;
  Value value;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negate = false;
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  enum class Kind {
    Text,         // text
    Output,       // {{ expr }}
    If,           // conds[i] -> bodies[i]; bodies.size() == conds.size() + 1 when there is an else
    For,          // for targets in expr [if cond]: bodies[0], else bodies[1]
    Set,          // targets[0] (or targets[0].targets[1] for namespace attributes) = expr
    SetBlock,     // targets[0] = rendered bodies[0]
    Macro,        // targets[0] = name, targets[1..] params with defaults in conds (null: required)
    FilterBlock,  // expr is a Filter whose args[0] is null: applied to rendered bodies[0]
    Scope,        // bodies[0] rendered inline (generation blocks)
    Break,
    Continue,
  };
  Kind kind;
  int line = 0, col = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;  // for-loop filter
  std::vector<std::string> targets;
  std::vector<ExprPtr> conds;
  std::vector<Body> bodies;
};

}  // namespace llmd::model::jinja
