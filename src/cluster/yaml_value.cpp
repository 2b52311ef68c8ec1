#include "cluster/yaml_value.hpp"

#include <array>
#include <cctype>

#include "common/error.hpp"

namespace llmd::cluster::yaml {
namespace {

bool is_collection(const Value& v) {
  return v.kind() == Value::Kind::kList || v.kind() == Value::Kind::kMap;
}

bool printable_ascii(std::string_view s) {
  for (const char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

// What a plain scalar must avoid to be read as one scalar at all: indicators at its start, ": " and
// " #" inside, edges of spaces.
bool plain_structure_ok(std::string_view s) {
  if (s.empty() || !printable_ascii(s) || s.front() == ' ' || s.back() == ' ' || s.back() == ':')
    return false;
  if (s.find(": ") != std::string_view::npos || s.find(" #") != std::string_view::npos) return false;
  constexpr std::string_view kIndicators = "!&*{}[]|>'\"%@`#,?:";
  if (kIndicators.find(s.front()) != std::string_view::npos) return false;
  if (s.front() == '-' && (s.size() == 1 || s[1] == ' ')) return false;
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          constexpr std::string_view kHex = "0123456789abcdef";
          out += "\\x";
          out += kHex[static_cast<unsigned char>(c) >> 4];
          out += kHex[static_cast<unsigned char>(c) & 15];
        } else {
          out += c;  // UTF-8 bytes stay as they are: YAML is UTF-8
        }
    }
  }
  return out + "\"";
}

// A literal block keeps a multi-line text (a config file in a ConfigMap) readable. It cannot
// carry carriage returns, control characters or a first line that starts with a space (that
// would need an indentation indicator); such texts are written double-quoted instead.
bool fits_literal_block(std::string_view s) {
  if (s.find('\n') == std::string_view::npos) return false;
  for (const char c : s)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\n') || c == 0x7f) return false;
  const std::size_t first = s.find_first_not_of('\n');
  if (first == std::string_view::npos || s[first] == ' ') return false;
  std::size_t pos = 0;
  while (pos < s.size()) {  // a line of spaces alone would be read as indentation
    std::size_t end = s.find('\n', pos);
    if (end == std::string_view::npos) end = s.size();
    const std::string_view line = s.substr(pos, end - pos);
    if (!line.empty() && line.find_first_not_of(' ') == std::string_view::npos) return false;
    if (!line.empty() && line.back() == ' ') return false;  // invisible, and editors strip it
    pos = end + 1;
  }
  return true;
}

void literal_block(std::string& out, std::string_view s, int indent) {
  std::size_t trailing = 0;
  while (trailing < s.size() && s[s.size() - 1 - trailing] == '\n') ++trailing;
  out += trailing == 0 ? "|-\n" : trailing == 1 ? "|\n" : "|+\n";
  const std::string_view body = s.substr(0, s.size() - trailing);
  std::size_t pos = 0;
  while (pos <= body.size()) {
    std::size_t end = body.find('\n', pos);
    if (end == std::string_view::npos) end = body.size();
    const std::string_view line = body.substr(pos, end - pos);
    if (!line.empty()) out.append(static_cast<std::size_t>(indent), ' ').append(line);
    out += '\n';
    pos = end + 1;
  }
  for (std::size_t i = 1; i < trailing; ++i) out += '\n';
}

// The scalar after "key: " or "- "; `indent` is the column of a literal block's lines.
void scalar(std::string& out, const Value& v, int indent) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      out += "null\n";
      return;
    case Value::Kind::kBool:
      out += v.boolean() ? "true\n" : "false\n";
      return;
    case Value::Kind::kInt:
      out += std::to_string(v.integer()) + "\n";
      return;
    case Value::Kind::kPlain:
      out += (plain_structure_ok(v.text()) ? v.text() : quoted(v.text())) + "\n";
      return;
    case Value::Kind::kString:
      if (fits_literal_block(v.text())) return literal_block(out, v.text(), indent);
      out += (is_plain_string(v.text()) ? v.text() : quoted(v.text())) + "\n";
      return;
    case Value::Kind::kList:
      out += "[]\n";  // only empty ones come here
      return;
    case Value::Kind::kMap:
      out += "{}\n";
      return;
  }
}

void block(std::string& out, const Value& v, int indent);

void list_item(std::string& out, const Value& item, int indent) {
  if (!is_collection(item) || item.empty()) {
    out.append(static_cast<std::size_t>(indent), ' ').append("- ");
    return scalar(out, item, indent + 2);
  }
  // The item's first line shares the dash's line: render it two columns in, then put the dash
  // into the first line's indentation.
  const std::size_t start = out.size();
  block(out, item, indent + 2);
  out.replace(start, static_cast<std::size_t>(indent + 2),
              std::string(static_cast<std::size_t>(indent), ' ') + "- ");
}

void block(std::string& out, const Value& v, int indent) {
  if (v.kind() == Value::Kind::kList) {
    for (const Value& item : v.items()) list_item(out, item, indent);
    return;
  }
  for (const auto& [key, val] : v.entries()) {
    out.append(static_cast<std::size_t>(indent), ' ');
    out += is_plain_string(key) ? key : quoted(key);
    out += ':';
    if (!is_collection(val) || val.empty()) {
      out += ' ';
      scalar(out, val, indent + 2);
    } else {
      out += '\n';
      // Lists sit at their key's column, maps two columns in: kubectl's layout.
      block(out, val, val.kind() == Value::Kind::kList ? indent : indent + 2);
    }
  }
}

}  // namespace

Value Value::plain(std::string text) {
  Value v;
  v.kind_ = Kind::kPlain;
  v.text_ = std::move(text);
  return v;
}

Value Value::list(std::initializer_list<Value> items) {
  Value v;
  v.kind_ = Kind::kList;
  v.items_.assign(items.begin(), items.end());
  return v;
}

Value Value::map(std::initializer_list<Entry> entries) {
  Value v;
  v.kind_ = Kind::kMap;
  for (const Entry& e : entries) v.set(e.first, e.second);
  return v;
}

Value& Value::set(std::string key, Value v) {
  if (kind_ != Kind::kMap) fail("yaml: set('{}') on a value that is not a map", key);
  if (find(key)) fail("yaml: key '{}' set twice", key);
  entries_.emplace_back(std::move(key), std::move(v));
  return entries_.back().second;
}

const Value* Value::find(std::string_view key) const {
  for (const Entry& e : entries_)
    if (e.first == key) return &e.second;
  return nullptr;
}

Value* Value::find(std::string_view key) {
  for (Entry& e : entries_)
    if (e.first == key) return &e.second;
  return nullptr;
}

Value& Value::push(Value v) {
  if (kind_ != Kind::kList) fail("yaml: push on a value that is not a list");
  items_.push_back(std::move(v));
  return items_.back();
}

bool is_plain_string(std::string_view s) {
  if (!plain_structure_ok(s)) return false;
  // Numbers, timestamps, .inf and .nan all start like this; quoting them all is simpler than
  // telling them apart and costs nothing.
  const char c = s.front();
  if (std::isdigit(static_cast<unsigned char>(c)) || c == '+' || c == '.') return false;
  if (c == '-' && (std::isdigit(static_cast<unsigned char>(s[1])) || s[1] == '.')) return false;
  // YAML 1.1's booleans and null (go-yaml, which kubectl uses, still reads "yes" and "on" as true).
  constexpr std::array<std::string_view, 13> kReserved = {"true", "false", "yes", "no", "y",  "n",  "on",
                                                          "off",  "null",  "~",   "=",  "<<", "nan"};
  for (const std::string_view r : kReserved)
    if (iequals(s, r)) return false;
  return true;
}

std::string emit(const Value& doc) {
  std::string out;
  if (is_collection(doc) && !doc.empty())
    block(out, doc, 0);
  else
    scalar(out, doc, 2);
  return out;
}

}  // namespace llmd::cluster::yaml
