#pragma once
// Jinja2's filters and tests and the Python methods of str, dict and list that chat templates call.
#include <string_view>

#include "model/jinja_value.hpp"

namespace llmd::model::jinja {

bool is_known_filter(std::string_view name);
bool is_known_test(std::string_view name);

// Limits a builtin must respect while it builds a value (a string or list it makes may not exceed
// max_bytes / max_items).
struct BuiltinLimits {
  size_t max_bytes = 0;
  size_t max_items = 0;
};

// All throw llmd::Error for a wrong argument or an operation on an undefined value.
Value apply_filter(std::string_view name, const Value& in, const CallArgs& args, const BuiltinLimits& lim);
bool apply_test(std::string_view name, const Value& in, const CallArgs& args);
// nullopt-like: sets `found` false when `obj` has no such method (the caller then falls back to
// attribute lookup).
Value call_method(const Value& obj, std::string_view name, const CallArgs& args, const BuiltinLimits& lim,
                  bool& found);

// Python's `a < b`; throws for values Python cannot order.
bool less(const Value& a, const Value& b);
// Python's `a in b`.
bool contains(const Value& container, const Value& item);
// Python's str.strip family with `chars` (nullptr: whitespace).
std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right);

}  // namespace llmd::model::jinja
