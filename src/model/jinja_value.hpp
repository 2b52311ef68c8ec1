#pragma once
// The values of the Jinja interpreter behind chat templates. They follow Python's semantics where a
// template can observe them (truthiness, equality, str(), repr(), json.dumps), because the reference
// renders are Python's Jinja2 with Hugging Face's settings and a prompt must match them byte for byte.
//
// Lists and dicts are shared and never changed after construction (HF renders with Jinja2's
// ImmutableSandboxedEnvironment), except namespace() objects, which `{% set ns.x = ... %}` mutates:
// so copying a Value is cheap and aliasing is harmless.
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace llmd::model::jinja {

struct Value;
struct Stmt;
using List = std::vector<Value>;

// Insertion-ordered like a Python dict: tojson and `for k, v in d.items()` show keys in that order.
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;
  const Value* find(std::string_view key) const;
  void set(std::string key, Value v);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  // Positional `i`, else keyword `name`, else nullptr.
  const Value* get(size_t i, std::string_view name) const;
};

struct Callable {
  std::string name;
  std::function<Value(const CallArgs&)> fn;  // a builtin global (range, namespace, raise_exception...)
  const Stmt* macro = nullptr;               // or a {% macro %}, run by the interpreter
};

struct Undefined {
  std::string hint;  // what was looked up, for "'x' is undefined"
};

struct Value {
  using Storage =
      std::variant<Undefined, std::nullptr_t, bool, int64_t, double, std::string, std::shared_ptr<const List>,
                   std::shared_ptr<Dict>, std::shared_ptr<const Callable>>;
  Storage v;

  Value() = default;
  Value(Undefined u) : v(std::move(u)) {}
  Value(std::nullptr_t) : v(nullptr) {}
  Value(bool b) : v(b) {}
  Value(int i) : v(int64_t{i}) {}
  Value(int64_t i) : v(i) {}
  Value(size_t i) : v(static_cast<int64_t>(i)) {}
  Value(double d) : v(d) {}
  Value(std::string s) : v(std::move(s)) {}
  Value(const char* s) : v(std::string(s)) {}
  Value(List l) : v(std::make_shared<const List>(std::move(l))) {}
  Value(std::shared_ptr<Dict> d) : v(std::move(d)) {}
  Value(std::shared_ptr<const Callable> c) : v(std::move(c)) {}

  bool is_undefined() const { return v.index() == 0; }
  bool is_none() const { return v.index() == 1; }
  bool is_bool() const { return v.index() == 2; }
  bool is_int() const { return v.index() == 3; }
  bool is_float() const { return v.index() == 4; }
  bool is_number() const { return is_bool() || is_int() || is_float(); }
  bool is_string() const { return v.index() == 5; }
  bool is_list() const { return v.index() == 6; }
  bool is_dict() const { return v.index() == 7; }
  bool is_callable() const { return v.index() == 8; }

  bool as_bool() const { return std::get<bool>(v); }
  int64_t as_int() const;    // bool or int
  double as_double() const;  // any number
  const std::string& str() const { return std::get<std::string>(v); }
  const List& list() const { return *std::get<std::shared_ptr<const List>>(v); }
  const Dict& dict() const { return *std::get<std::shared_ptr<Dict>>(v); }
  Dict& mutable_dict() const { return *std::get<std::shared_ptr<Dict>>(v); }
  const Callable& callable() const { return *std::get<std::shared_ptr<const Callable>>(v); }
  const std::string& undefined_hint() const { return std::get<Undefined>(v).hint; }

  bool truthy() const;
  std::string_view type_name() const;  // Python's, for error messages
};

std::shared_ptr<Dict> make_dict();

bool equals(const Value& a, const Value& b);  // Python ==
// Python str(): what {{ x }} prints. repr() is what str() of a container prints for its items.
std::string to_str(const Value& v);
std::string to_repr(const Value& v);
std::string float_repr(double d);

struct JsonDumpOptions {
  int indent = -1;  // -1: one line with ", " and ": "
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::string item_sep, key_sep;  // empty: Python's defaults for the indent
};
// json.dumps; throws llmd::Error for what JSON cannot hold (undefined, callables).
std::string to_json(const Value& v, const JsonDumpOptions& opt);

Value from_json(const nlohmann::json& j);
Value from_json(const nlohmann::ordered_json& j);

// UTF-8 helpers: Python indexes strings by code point.
std::vector<std::string_view> split_code_points(std::string_view s);
size_t count_code_points(std::string_view s);

}  // namespace llmd::model::jinja
