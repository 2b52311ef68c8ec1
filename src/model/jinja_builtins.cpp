#include "model/jinja_builtins.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <set>

#include "common/error.hpp"

namespace llmd::model::jinja {
namespace {

constexpr std::array kFilters = {
    "abs",        "attr",    "capitalize", "count",       "d",      "default", "dictsort",   "e",
    "escape",     "first",   "float",      "forceescape", "indent", "int",     "items",      "join",
    "last",       "length",  "list",       "lower",       "map",    "max",     "min",        "reject",
    "rejectattr", "replace", "reverse",    "round",       "safe",   "select",  "selectattr", "sort",
    "string",     "sum",     "title",      "tojson",      "trim",   "unique",  "upper",
};

constexpr std::array kTests = {
    "boolean", "callable", "defined",  "divisibleby", "eq",      "equalto",   "escaped", "even",
    "false",   "float",    "ge",       "greaterthan", "gt",      "in",        "integer", "iterable",
    "le",      "lessthan", "lower",    "lt",          "mapping", "ne",        "none",    "number",
    "odd",     "sameas",   "sequence", "string",      "true",    "undefined", "upper",   "==",
    "!=",      "<",        "<=",       ">",           ">=",
};

[[noreturn]] void undefined_error(const Value& v) {
  const auto& h = v.undefined_hint();
  fail("{}", h.empty() ? std::string("value is undefined") : fmt::format("'{}' is undefined", h));
}

const std::string& need_str(const Value& v, std::string_view what) {
  if (v.is_undefined()) undefined_error(v);
  if (!v.is_string()) fail("{}: expected a string, got {}", what, v.type_name());
  return v.str();
}

int64_t need_int(const Value& v, std::string_view what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  if (v.is_undefined()) undefined_error(v);
  fail("{}: expected an integer, got {}", what, v.type_name());
}

bool arg_bool(const CallArgs& a, size_t i, std::string_view name, bool dflt) {
  const Value* v = a.get(i, name);
  return v ? v->truthy() : dflt;
}

void check_size(size_t n, const BuiltinLimits& lim) {
  if (lim.max_bytes && n > lim.max_bytes) fail("chat template output exceeds {} bytes", lim.max_bytes);
}

bool is_ws(unsigned char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

// Items of anything Python can iterate: list, dict keys, string characters; undefined is empty.
List iterate(const Value& v, std::string_view what) {
  if (v.is_list()) return v.list();
  if (v.is_undefined()) return {};
  if (v.is_dict()) {
    List out;
    for (const auto& [k, e] : v.dict().items) out.emplace_back(k);
    return out;
  }
  if (v.is_string()) {
    List out;
    for (auto cp : split_code_points(v.str())) out.emplace_back(std::string(cp));
    return out;
  }
  fail("{}: '{}' object is not iterable", what, v.type_name());
}

// Jinja2's environment.getattr for filters that take an attribute name ("a.b" and "0" allowed).
Value get_attr_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (cur.is_dict()) {
      const Value* f = cur.dict().find(part);
      cur = f ? *f : Value(Undefined{part});
    } else if (cur.is_list() && !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
      const size_t i = std::stoul(part);
      cur = i < cur.list().size() ? cur.list()[i] : Value(Undefined{part});
    } else if (cur.is_undefined()) {
      undefined_error(cur);
    } else {
      cur = Undefined{part};
    }
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string capitalize(const std::string& s) {
  std::string out = lower(s);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}
// Python's str.title(): a letter after a non-letter starts a word.
std::string py_title(const std::string& s) {
  std::string out = s;
  bool prev_letter = false;
  for (auto& c : out) {
    const bool letter = std::isalpha(static_cast<unsigned char>(c));
    if (letter) c = static_cast<char>(prev_letter ? std::tolower(c) : std::toupper(c));
    prev_letter = letter;
  }
  return out;
}
// Jinja2's title filter: words begin after runs of whitespace, '-', '(', '{', '[' or '<'.
std::string jinja_title(const std::string& s) {
  std::string out = s;
  bool start = true;
  for (auto& c : out) {
    const bool sep =
        is_ws(static_cast<unsigned char>(c)) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (sep) {
      start = true;
      continue;
    }
    c = static_cast<char>(start ? std::toupper(static_cast<unsigned char>(c))
                                : std::tolower(static_cast<unsigned char>(c)));
    start = false;
  }
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count,
                        const BuiltinLimits& lim) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` between characters (and at both ends).
    const auto cps = split_code_points(s);
    int64_t n = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || n < count) {
        out += to;
        ++n;
      }
      if (i < cps.size()) out += cps[i];
      check_size(out.size(), lim);
    }
    return out;
  }
  size_t pos = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    const size_t f = s.find(from, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += to;
    check_size(out.size(), lim);
    pos = f + from.size();
    ++n;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

Value py_split(const std::string& s, const Value* sep, int64_t maxsplit, bool from_right) {
  List out;
  if (!sep || sep->is_none()) {
    std::vector<std::string> words;
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && is_ws(s[i])) ++i;
      if (i >= s.size()) break;
      size_t j = i;
      while (j < s.size() && !is_ws(s[j])) ++j;
      words.push_back(s.substr(i, j - i));
      i = j;
    }
    if (maxsplit >= 0 && static_cast<int64_t>(words.size()) > maxsplit + 1) {
      // Rejoining loses the original whitespace only when maxsplit is used: find the cut in `s`.
      if (!from_right) {
        size_t pos = 0;
        for (int64_t k = 0; k < maxsplit; ++k) {
          pos = s.find(words[k], pos) + words[k].size();
          out.emplace_back(words[k]);
        }
        while (pos < s.size() && is_ws(s[pos])) ++pos;
        std::string rest = s.substr(pos);
        while (!rest.empty() && is_ws(rest.back())) rest.pop_back();
        out.emplace_back(rest);
      } else {
        size_t end = s.size();
        List tail;
        for (int64_t k = 0; k < maxsplit; ++k) {
          const auto& w = words[words.size() - 1 - k];
          end = s.rfind(w, end - 1);
          tail.insert(tail.begin(), Value(w));
        }
        std::string rest = s.substr(0, end);
        while (!rest.empty() && is_ws(rest.back())) rest.pop_back();
        size_t b = 0;
        while (b < rest.size() && is_ws(rest[b])) ++b;
        out.emplace_back(rest.substr(b));
        for (auto& t : tail) out.push_back(std::move(t));
      }
      return out;
    }
    for (auto& w : words) out.emplace_back(std::move(w));
    return out;
  }
  const std::string& d = need_str(*sep, "split");
  if (d.empty()) fail("split: empty separator");
  if (!from_right) {
    size_t pos = 0;
    int64_t n = 0;
    while (maxsplit < 0 || n < maxsplit) {
      const size_t f = s.find(d, pos);
      if (f == std::string::npos) break;
      out.emplace_back(s.substr(pos, f - pos));
      pos = f + d.size();
      ++n;
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  std::vector<std::string> parts;
  size_t end = s.size();
  int64_t n = 0;
  while (maxsplit < 0 || n < maxsplit) {
    if (end < d.size()) break;
    const size_t f = s.rfind(d, end - d.size());
    if (f == std::string::npos) break;
    parts.push_back(s.substr(f + d.size(), end - f - d.size()));
    end = f;
    ++n;
  }
  parts.push_back(s.substr(0, end));
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) out.emplace_back(*it);
  return out;
}

bool starts_or_ends(const std::string& s, const Value& arg, bool ends) {
  auto one = [&](const Value& p) {
    const std::string& x = need_str(p, ends ? "endswith" : "startswith");
    if (x.size() > s.size()) return false;
    return ends ? s.compare(s.size() - x.size(), x.size(), x) == 0 : s.compare(0, x.size(), x) == 0;
  };
  if (arg.is_list()) {
    for (const auto& p : arg.list())
      if (one(p)) return true;
    return false;
  }
  return one(arg);
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Value sum_like(const List& items, Value start) {
  Value acc = std::move(start);
  for (const auto& v : items) {
    if (!acc.is_number() || !v.is_number()) fail("sum: unsupported operand types");
    if (acc.is_float() || v.is_float())
      acc = acc.as_double() + v.as_double();
    else
      acc = acc.as_int() + v.as_int();
  }
  return acc;
}

// select/reject/selectattr/rejectattr: args after the test name are the test's arguments.
Value select_impl(const Value& in, const CallArgs& args, bool attr, bool keep) {
  size_t i = 0;
  std::string attribute;
  if (attr) {
    if (args.pos.empty()) fail("selectattr: missing attribute name");
    attribute = to_str(args.pos[i++]);
  }
  std::string test;
  if (i < args.pos.size()) test = need_str(args.pos[i++], "select");
  CallArgs targs;
  targs.pos.assign(args.pos.begin() + static_cast<std::ptrdiff_t>(std::min(i, args.pos.size())),
                   args.pos.end());
  List out;
  for (const auto& item : iterate(in, "select")) {
    const Value subject = attr ? get_attr_path(item, attribute) : item;
    const bool ok = test.empty() ? subject.truthy() : apply_test(test, subject, targs);
    if (ok == keep) out.push_back(item);
  }
  return out;
}

}  // namespace

bool is_known_filter(std::string_view name) {
  return std::find(kFilters.begin(), kFilters.end(), name) != kFilters.end();
}
bool is_known_test(std::string_view name) {
  return std::find(kTests.begin(), kTests.end(), name) != kTests.end();
}

std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right) {
  auto strip_char = [&](char c) {
    return chars ? chars->find(c) != std::string::npos : is_ws(static_cast<unsigned char>(c));
  };
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && strip_char(s[b])) ++b;
  if (right)
    while (e > b && strip_char(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

bool less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();
  if (a.is_list() && b.is_list()) {
    const auto &x = a.list(), &y = b.list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equals(x[i], y[i])) return less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  fail("'<' not supported between instances of '{}' and '{}'", a.type_name(), b.type_name());
}

bool contains(const Value& c, const Value& item) {
  if (c.is_string()) {
    if (item.is_undefined()) undefined_error(item);
    if (!item.is_string()) fail("'in <string>' requires string as left operand, not {}", item.type_name());
    return c.str().find(item.str()) != std::string::npos;
  }
  if (c.is_list()) {
    for (const auto& e : c.list())
      if (equals(e, item)) return true;
    return false;
  }
  if (c.is_dict()) return item.is_string() && c.dict().find(item.str()) != nullptr;
  if (c.is_undefined()) return false;  // Jinja2's Undefined iterates as empty
  fail("argument of type '{}' is not iterable", c.type_name());
}

bool apply_test(std::string_view name, const Value& v, const CallArgs& args) {
  auto arg0 = [&]() -> const Value& {
    if (args.pos.empty()) fail("test '{}' needs an argument", name);
    return args.pos[0];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  // Jinja2's Undefined is iterable (empty) and has __len__/__getitem__, so it passes these two.
  if (name == "iterable" || name == "sequence")
    return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "callable") return v.is_callable();
  if (name == "escaped") return false;
  if (name == "odd") return need_int(v, "odd") % 2 != 0;
  if (name == "even") return need_int(v, "even") % 2 == 0;
  if (name == "divisibleby") {
    const int64_t d = need_int(arg0(), "divisibleby");
    if (d == 0) fail("divisibleby: division by zero");
    return need_int(v, "divisibleby") % d == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return equals(v, arg0());
  if (name == "ne" || name == "!=") return !equals(v, arg0());
  if (name == "lt" || name == "lessthan" || name == "<") return less(v, arg0());
  if (name == "le" || name == "<=") return !less(arg0(), v);
  if (name == "gt" || name == "greaterthan" || name == ">") return less(arg0(), v);
  if (name == "ge" || name == ">=") return !less(v, arg0());
  if (name == "in") return contains(arg0(), v);
  if (name == "sameas") {
    const Value& o = arg0();
    if (v.is_dict() && o.is_dict()) return &v.dict() == &o.dict();
    if (v.is_list() && o.is_list()) return &v.list() == &o.list();
    return (v.is_none() && o.is_none()) || (v.is_bool() && o.is_bool() && v.as_bool() == o.as_bool());
  }
  if (name == "lower") return v.is_string() && lower(v.str()) == v.str();
  if (name == "upper") return v.is_string() && upper(v.str()) == v.str();
  fail("no test named '{}'", name);
}

Value apply_filter(std::string_view name, const Value& in, const CallArgs& args, const BuiltinLimits& lim) {
  if (name == "default" || name == "d") {
    const Value* d = args.get(0, "default_value");
    const bool boolean = arg_bool(args, 1, "boolean", false);
    if (in.is_undefined() || (boolean && !in.truthy())) return d ? *d : Value("");
    return in;
  }
  if (name == "safe") return in;
  if (name == "string") return to_str(in);
  if (name == "trim") {
    const Value* chars = args.get(0, "chars");
    const std::string* cs = chars && chars->is_string() ? &chars->str() : nullptr;
    return py_strip(to_str(in), cs, true, true);
  }
  if (name == "length" || name == "count") {
    if (in.is_string()) return count_code_points(in.str());
    if (in.is_list()) return in.list().size();
    if (in.is_dict()) return in.dict().items.size();
    if (in.is_undefined()) return 0;
    fail("object of type '{}' has no len()", in.type_name());
  }
  if (name == "lower") return lower(to_str(in));
  if (name == "upper") return upper(to_str(in));
  if (name == "capitalize") return capitalize(to_str(in));
  if (name == "title") return jinja_title(to_str(in));
  if (name == "escape" || name == "e" || name == "forceescape") return html_escape(to_str(in));
  if (name == "first" || name == "last") {
    List items = iterate(in, name);
    if (items.empty()) return Undefined{std::string(name)};
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return iterate(in, "list");
  if (name == "reverse") {
    if (in.is_string()) {
      auto cps = split_code_points(in.str());
      std::string out;
      for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
      return out;
    }
    List items = iterate(in, "reverse");
    std::reverse(items.begin(), items.end());
    return items;
  }
  if (name == "join") {
    const Value* sep = args.get(0, "d");
    const Value* attr = args.get(1, "attribute");
    const std::string s = sep ? to_str(*sep) : "";
    std::string out;
    bool first = true;
    for (const auto& item : iterate(in, "join")) {
      if (!first) out += s;
      first = false;
      out += to_str(attr ? get_attr_path(item, to_str(*attr)) : item);
      check_size(out.size(), lim);
    }
    return out;
  }
  if (name == "items") {
    if (in.is_undefined()) return List{};
    if (!in.is_dict()) fail("items: can only get item pairs from a mapping");
    List out;
    for (const auto& [k, v] : in.dict().items) out.emplace_back(List{Value(k), v});
    return out;
  }
  if (name == "dictsort") {
    if (!in.is_dict()) fail("dictsort: expected a mapping");
    const bool cs = arg_bool(args, 0, "case_sensitive", false);
    const Value* by = args.get(1, "by");
    const bool by_value = by && to_str(*by) == "value";
    const bool rev = arg_bool(args, 2, "reverse", false);
    std::vector<std::pair<Value, Value>> items;
    for (const auto& [k, v] : in.dict().items) items.emplace_back(Value(k), v);
    auto key = [&](const Value& v) { return !cs && v.is_string() ? Value(lower(v.str())) : v; };
    std::stable_sort(items.begin(), items.end(), [&](const auto& a, const auto& b) {
      const Value& x = by_value ? a.second : a.first;
      const Value& y = by_value ? b.second : b.first;
      return rev ? less(key(y), key(x)) : less(key(x), key(y));
    });
    List out;
    for (auto& [k, v] : items) out.emplace_back(List{k, v});
    return out;
  }
  if (name == "map") {
    List out;
    const Value* attr = nullptr;
    for (const auto& [k, v] : args.kw)
      if (k == "attribute") attr = &v;
    if (attr) {
      const Value* dflt = nullptr;
      for (const auto& [k, v] : args.kw)
        if (k == "default") dflt = &v;
      for (const auto& item : iterate(in, "map")) {
        Value r = get_attr_path(item, to_str(*attr));
        out.push_back(r.is_undefined() && dflt ? *dflt : r);
      }
      return out;
    }
    if (args.pos.empty()) fail("map: expected a filter name or attribute=");
    const std::string& f = need_str(args.pos[0], "map");
    if (!is_known_filter(f)) fail("map: no filter named '{}'", f);
    CallArgs fargs;
    fargs.pos.assign(args.pos.begin() + 1, args.pos.end());
    fargs.kw = args.kw;
    for (const auto& item : iterate(in, "map")) out.push_back(apply_filter(f, item, fargs, lim));
    return out;
  }
  if (name == "select") return select_impl(in, args, false, true);
  if (name == "reject") return select_impl(in, args, false, false);
  if (name == "selectattr") return select_impl(in, args, true, true);
  if (name == "rejectattr") return select_impl(in, args, true, false);
  if (name == "attr") {
    const Value* a = args.get(0, "name");
    if (!a) fail("attr: missing name");
    return get_attr_path(in, to_str(*a));
  }
  if (name == "replace") {
    const Value* from = args.get(0, "old");
    const Value* to = args.get(1, "new");
    const Value* count = args.get(2, "count");
    if (!from || !to) fail("replace: expected old and new");
    return replace_all(to_str(in), to_str(*from), to_str(*to),
                       count && !count->is_none() ? need_int(*count, "replace") : -1, lim);
  }
  if (name == "sort" || name == "unique" || name == "min" || name == "max") {
    List items = iterate(in, name);
    const bool cs = arg_bool(args, name == "sort" ? 1 : 0, "case_sensitive", false);
    const Value* attr = args.get(name == "sort" ? 2 : 1, "attribute");
    auto key = [&](const Value& v) {
      Value k = attr ? get_attr_path(v, to_str(*attr)) : v;
      return !cs && k.is_string() ? Value(lower(k.str())) : k;
    };
    if (name == "unique") {
      List out;
      std::vector<Value> seen;
      for (const auto& v : items) {
        const Value k = key(v);
        if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, k); })) {
          seen.push_back(k);
          out.push_back(v);
        }
      }
      return out;
    }
    if (name == "sort") {
      const bool rev = arg_bool(args, 0, "reverse", false);
      std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
        return rev ? less(key(b), key(a)) : less(key(a), key(b));
      });
      return items;
    }
    if (items.empty()) return Undefined{std::string(name)};
    auto it = std::min_element(items.begin(), items.end(), [&](const Value& a, const Value& b) {
      return name == "min" ? less(key(a), key(b)) : less(key(b), key(a));
    });
    return *it;
  }
  if (name == "sum") {
    const Value* attr = args.get(0, "attribute");
    const Value* start = args.get(1, "start");
    List items = iterate(in, "sum");
    if (attr)
      for (auto& v : items) v = get_attr_path(v, to_str(*attr));
    return sum_like(items, start ? *start : Value(0));
  }
  if (name == "int") {
    const Value* d = args.get(0, "default");
    const Value dflt = d ? *d : Value(0);
    if (in.is_int() || in.is_bool()) return in.as_int();
    if (in.is_float()) return static_cast<int64_t>(in.as_double());
    if (in.is_string()) {
      try {
        size_t used = 0;
        const std::string s = py_strip(in.str(), nullptr, true, true);
        const long long v = std::stoll(s, &used, 10);
        if (used == s.size()) return static_cast<int64_t>(v);
        const double f = std::stod(s, &used);
        if (used == s.size()) return static_cast<int64_t>(f);
      } catch (const std::exception&) {
      }
    }
    return dflt;
  }
  if (name == "float") {
    const Value* d = args.get(0, "default");
    if (in.is_number()) return in.as_double();
    if (in.is_string()) {
      try {
        size_t used = 0;
        const std::string s = py_strip(in.str(), nullptr, true, true);
        const double f = std::stod(s, &used);
        if (used == s.size()) return f;
      } catch (const std::exception&) {
      }
    }
    return d ? *d : Value(0.0);
  }
  if (name == "abs") {
    if (in.is_float()) return std::fabs(in.as_double());
    const int64_t v = need_int(in, "abs");
    return v < 0 ? -v : v;
  }
  if (name == "round") {
    const Value* p = args.get(0, "precision");
    const Value* m = args.get(1, "method");
    const int64_t prec = p ? need_int(*p, "round") : 0;
    const std::string method = m ? to_str(*m) : "common";
    if (!in.is_number()) fail("round: expected a number");
    const double scale = std::pow(10.0, static_cast<double>(prec));
    double x = in.as_double() * scale;
    // "common" is Python's round(): halves go to the even neighbour.
    x = method == "floor" ? std::floor(x) : method == "ceil" ? std::ceil(x) : std::nearbyint(x);
    return x / scale;
  }
  if (name == "indent") {
    const Value* w = args.get(0, "width");
    const bool first = arg_bool(args, 1, "first", false);
    const bool blank = arg_bool(args, 2, "blank", false);
    const std::string pad = w && w->is_string()
                                ? w->str()
                                : std::string(w ? static_cast<size_t>(need_int(*w, "indent")) : 4, ' ');
    const std::string s = to_str(in);
    std::string out;
    size_t pos = 0;
    bool first_line = true;
    while (pos <= s.size()) {
      size_t nl = s.find('\n', pos);
      const bool last = nl == std::string::npos;
      const std::string line = s.substr(pos, last ? std::string::npos : nl - pos);
      if (!first_line || first) {
        if (blank || !py_strip(line, nullptr, true, true).empty()) out += pad;
      }
      out += line;
      check_size(out.size(), lim);
      if (last) break;
      out += '\n';
      pos = nl + 1;
      first_line = false;
    }
    return out;
  }
  if (name == "tojson") {
    // transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    JsonDumpOptions o;
    if (const Value* a = args.get(0, "ensure_ascii")) o.ensure_ascii = a->truthy();
    if (const Value* i = args.get(1, "indent"); i && !i->is_none()) {
      o.indent = static_cast<int>(std::clamp<int64_t>(need_int(*i, "tojson indent"), 0, 64));
    }
    if (const Value* s = args.get(2, "separators"); s && s->is_list() && s->list().size() == 2) {
      o.item_sep = to_str(s->list()[0]);
      o.key_sep = to_str(s->list()[1]);
    }
    if (const Value* k = args.get(3, "sort_keys")) o.sort_keys = k->truthy();
    std::string out = to_json(in, o);
    check_size(out.size(), lim);
    return out;
  }
  fail("no filter named '{}'", name);
}

Value call_method(const Value& obj, std::string_view name, const CallArgs& args, const BuiltinLimits& lim,
                  bool& found) {
  found = true;
  if (obj.is_string()) {
    const std::string& s = obj.str();
    auto opt_str = [&](size_t i, std::string_view n) -> const std::string* {
      const Value* v = args.get(i, n);
      return v && !v->is_none() ? &need_str(*v, name) : nullptr;
    };
    if (name == "strip") return py_strip(s, opt_str(0, "chars"), true, true);
    if (name == "lstrip") return py_strip(s, opt_str(0, "chars"), true, false);
    if (name == "rstrip") return py_strip(s, opt_str(0, "chars"), false, true);
    if (name == "startswith" || name == "endswith") {
      const Value* p = args.get(0, "prefix");
      if (!p) fail("{}: missing argument", name);
      return starts_or_ends(s, *p, name == "endswith");
    }
    if (name == "split" || name == "rsplit") {
      const Value* m = args.get(1, "maxsplit");
      return py_split(s, args.get(0, "sep"), m ? need_int(*m, name) : -1, name == "rsplit");
    }
    if (name == "upper") return upper(s);
    if (name == "lower") return lower(s);
    if (name == "title") return py_title(s);
    if (name == "capitalize") return capitalize(s);
    if (name == "replace") {
      const Value* c = args.get(2, "count");
      if (args.pos.size() < 2) fail("replace: expected old and new");
      return replace_all(s, need_str(args.pos[0], "replace"), need_str(args.pos[1], "replace"),
                         c ? need_int(*c, "replace") : -1, lim);
    }
    if (name == "find" || name == "rfind" || name == "index" || name == "count") {
      if (args.pos.empty()) fail("{}: missing argument", name);
      const std::string& sub = need_str(args.pos[0], name);
      if (name == "count") {
        if (sub.empty()) return count_code_points(s) + 1;
        int64_t n = 0;
        for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
        return n;
      }
      const size_t p = name == "rfind" ? s.rfind(sub) : s.find(sub);
      if (p == std::string::npos) {
        if (name == "index") fail("substring not found");
        return -1;
      }
      return count_code_points(std::string_view(s).substr(0, p));
    }
    if (name == "join") {
      if (args.pos.empty()) fail("join: missing argument");
      std::string out;
      bool first = true;
      for (const auto& item : iterate(args.pos[0], "join")) {
        if (!first) out += s;
        first = false;
        out += need_str(item, "join");
        check_size(out.size(), lim);
      }
      return out;
    }
    if (name == "splitlines") {
      List out;
      size_t pos = 0;
      while (pos < s.size()) {
        const size_t nl = s.find('\n', pos);
        out.emplace_back(s.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
        if (nl == std::string::npos) break;
        pos = nl + 1;
      }
      return out;
    }
    auto all = [&](auto pred) {
      return !s.empty() &&
             std::all_of(s.begin(), s.end(), [&](char c) { return pred(static_cast<unsigned char>(c)); });
    };
    if (name == "isdigit") return all([](unsigned char c) { return std::isdigit(c) != 0; });
    if (name == "isalpha") return all([](unsigned char c) { return std::isalpha(c) != 0; });
    if (name == "isalnum") return all([](unsigned char c) { return std::isalnum(c) != 0; });
    if (name == "isspace") return all([](unsigned char c) { return is_ws(c); });
    if (name == "isupper") return upper(s) == s && lower(s) != s;
    if (name == "islower") return lower(s) == s && upper(s) != s;
  } else if (obj.is_dict() && !obj.dict().is_namespace) {
    const Dict& d = obj.dict();
    if (name == "get") {
      if (args.pos.empty()) fail("get: missing key");
      const Value* dflt = args.get(1, "default");
      const Value* v = args.pos[0].is_string() ? d.find(args.pos[0].str()) : nullptr;
      return v ? *v : dflt ? *dflt : Value(nullptr);
    }
    if (name == "items" || name == "keys" || name == "values") {
      List out;
      for (const auto& [k, v] : d.items) {
        if (name == "items")
          out.emplace_back(List{Value(k), v});
        else if (name == "keys")
          out.emplace_back(k);
        else
          out.push_back(v);
      }
      return out;
    }
  } else if (obj.is_list()) {
    if (name == "index" || name == "count") {
      if (args.pos.empty()) fail("{}: missing argument", name);
      int64_t n = 0, i = 0;
      for (const auto& v : obj.list()) {
        if (equals(v, args.pos[0])) {
          if (name == "index") return i;
          ++n;
        }
        ++i;
      }
      if (name == "index") fail("list.index(x): x not in list");
      return n;
    }
  }
  found = false;
  return Undefined{std::string(name)};
}

}  // namespace llmd::model::jinja
