#include "model/jinja_value.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "common/error.hpp"

namespace llmd::model::jinja {

const Value* Dict::find(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void Dict::set(std::string key, Value v) {
  for (auto& [k, old] : items)
    if (k == key) {
      old = std::move(v);
      return;
    }
  items.emplace_back(std::move(key), std::move(v));
}

const Value* CallArgs::get(size_t i, std::string_view name) const {
  if (i < pos.size()) return &pos[i];
  for (const auto& [k, v] : kw)
    if (k == name) return &v;
  return nullptr;
}

std::shared_ptr<Dict> make_dict() {
  return std::make_shared<Dict>();
}

int64_t Value::as_int() const {
  return is_bool() ? int64_t{as_bool()} : std::get<int64_t>(v);
}

double Value::as_double() const {
  return is_float() ? std::get<double>(v) : static_cast<double>(as_int());
}

bool Value::truthy() const {
  switch (v.index()) {
    case 0:
    case 1:
      return false;
    case 2:
      return as_bool();
    case 3:
      return std::get<int64_t>(v) != 0;
    case 4:
      return std::get<double>(v) != 0.0;
    case 5:
      return !str().empty();
    case 6:
      return !list().empty();
    case 7:
      return dict().is_namespace || !dict().items.empty();
    default:
      return true;
  }
}

std::string_view Value::type_name() const {
  switch (v.index()) {
    case 0:
      return "Undefined";
    case 1:
      return "NoneType";
    case 2:
      return "bool";
    case 3:
      return "int";
    case 4:
      return "float";
    case 5:
      return "str";
    case 6:
      return "list";
    case 7:
      return dict().is_namespace ? "Namespace" : "dict";
    default:
      return "function";
  }
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.v.index() != b.v.index()) return false;
  if (a.is_undefined() || a.is_none()) return true;
  if (a.is_string()) return a.str() == b.str();
  if (a.is_list()) {
    const auto &x = a.list(), &y = b.list();
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i)
      if (!equals(x[i], y[i])) return false;
    return true;
  }
  if (a.is_dict()) {
    const auto &x = a.dict(), &y = b.dict();
    if (x.is_namespace || y.is_namespace) return &x == &y;  // identity, as for any Python object
    if (x.items.size() != y.items.size()) return false;
    for (const auto& [k, v] : x.items) {
      const Value* o = y.find(k);
      if (!o || !equals(v, *o)) return false;
    }
    return true;
  }
  return &a.callable() == &b.callable();
}

// Python's float repr: the shortest digits that round-trip, positional for exponents in [-4, 16).
std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  const int exp = std::stoi(sci.substr(e + 1));
  const bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out;
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out = digits + std::string(exp + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
  }
  return neg ? "-" + out : out;
}

namespace {

std::string str_repr(const std::string& s) {
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == q || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += q;
  return out;
}

void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else if (c >= 0x80 && ensure_ascii) {
      // Decode one UTF-8 sequence; ill-formed bytes are escaped as themselves.
      uint32_t cp = c;
      int n = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
      if (n > 0 && i + n < s.size()) {
        cp = c & (0x3F >> n);
        for (int k = 1; k <= n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        i += n;
      }
      if (cp >= 0x10000) {
        cp -= 0x10000;
        out += fmt::format("\\u{:04x}\\u{:04x}", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
      } else {
        out += fmt::format("\\u{:04x}", cp);
      }
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

void dump(std::string& out, const Value& v, const JsonDumpOptions& o, int depth) {
  if (depth > 512) fail("tojson: value nested too deeply");
  const std::string& isep =
      o.item_sep.empty() ? (o.indent >= 0 ? std::string(",") : std::string(", ")) : o.item_sep;
  const std::string& ksep = o.key_sep.empty() ? std::string(": ") : o.key_sep;
  auto newline = [&](int d) {
    if (o.indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(o.indent * d), ' ');
  };
  switch (v.v.index()) {
    case 0:
      fail("tojson: Object of type Undefined is not JSON serializable ({})", v.undefined_hint());
    case 1:
      out += "null";
      return;
    case 2:
      out += v.as_bool() ? "true" : "false";
      return;
    case 3:
      out += std::to_string(v.as_int());
      return;
    case 4: {
      const double d = v.as_double();
      if (std::isnan(d))
        out += "NaN";
      else if (std::isinf(d))
        out += d > 0 ? "Infinity" : "-Infinity";
      else
        out += float_repr(d);
      return;
    }
    case 5:
      json_string(out, v.str(), o.ensure_ascii);
      return;
    case 6: {
      const List& l = v.list();
      if (l.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < l.size(); ++i) {
        if (i) out += isep;
        newline(depth + 1);
        dump(out, l[i], o, depth + 1);
      }
      newline(depth);
      out += ']';
      return;
    }
    case 7: {
      const Dict& d = v.dict();
      if (d.items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : d.items) items.push_back(&kv);
      if (o.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += isep;
        newline(depth + 1);
        json_string(out, items[i]->first, o.ensure_ascii);
        out += ksep;
        dump(out, items[i]->second, o, depth + 1);
      }
      newline(depth);
      out += '}';
      return;
    }
    default:
      fail("tojson: Object of type function is not JSON serializable");
  }
}

template <class J>
Value convert(const J& j, int depth) {
  if (depth > 512) fail("chat template input nested too deeply");
  switch (j.type()) {
    case nlohmann::detail::value_t::null:
      return nullptr;
    case nlohmann::detail::value_t::boolean:
      return j.template get<bool>();
    case nlohmann::detail::value_t::number_integer:
      return j.template get<int64_t>();
    case nlohmann::detail::value_t::number_unsigned: {
      const auto u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return static_cast<double>(u);
      return static_cast<int64_t>(u);
    }
    case nlohmann::detail::value_t::number_float:
      return j.template get<double>();
    case nlohmann::detail::value_t::string:
      return j.template get<std::string>();
    case nlohmann::detail::value_t::array: {
      List l;
      l.reserve(j.size());
      for (const auto& e : j) l.push_back(convert(e, depth + 1));
      return l;
    }
    case nlohmann::detail::value_t::object: {
      auto d = make_dict();
      for (auto it = j.begin(); it != j.end(); ++it)
        d->items.emplace_back(it.key(), convert(it.value(), depth + 1));
      return d;
    }
    default:
      return nullptr;  // binary / discarded: nothing a chat request carries
  }
}

}  // namespace

std::string to_repr(const Value& v) {
  if (v.is_string()) return str_repr(v.str());
  if (v.is_undefined()) return "Undefined";
  return to_str(v);
}

std::string to_str(const Value& v) {
  switch (v.v.index()) {
    case 0:
      return "";
    case 1:
      return "None";
    case 2:
      return v.as_bool() ? "True" : "False";
    case 3:
      return std::to_string(v.as_int());
    case 4:
      return float_repr(v.as_double());
    case 5:
      return v.str();
    case 6: {
      std::string out = "[";
      bool first = true;
      for (const auto& e : v.list()) {
        if (!first) out += ", ";
        first = false;
        out += to_repr(e);
      }
      return out + "]";
    }
    case 7: {
      std::string out = v.dict().is_namespace ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, e] : v.dict().items) {
        if (!first) out += ", ";
        first = false;
        out += str_repr(k) + ": " + to_repr(e);
      }
      return out + (v.dict().is_namespace ? "}>" : "}");
    }
    default:
      return "<function " + v.callable().name + ">";
  }
}

std::string to_json(const Value& v, const JsonDumpOptions& opt) {
  std::string out;
  dump(out, v, opt, 0);
  return out;
}

Value from_json(const nlohmann::json& j) {
  return convert(j, 0);
}
Value from_json(const nlohmann::ordered_json& j) {
  return convert(j, 0);
}

std::vector<std::string_view> split_code_points(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = 1;
    while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80) ++n;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

size_t count_code_points(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace llmd::model::jinja
