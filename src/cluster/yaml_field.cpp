#include "cluster/yaml_field.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "common/error.hpp"

namespace llmd::cluster {
namespace {

// yaml-cpp tags a plain (unquoted) scalar "?" and a quoted one "!".
bool plain(const YAML::Node& n) {
  return n.Tag() == "?" || n.Tag().empty();
}

}  // namespace

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

void Field::fail_message(const std::string& message) const {
  throw Error(fmt::format("{}: {}", path_, message));
}

std::string Field::describe() const {
  switch (node_.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return quote(node_.Scalar());
    default:
      return "null";
  }
}

void Field::expect_keys(std::span<const std::string_view> keys) const {
  if (node_.IsNull()) return;
  if (!node_.IsMap()) fail("must be a mapping (got {})", describe());
  std::set<std::string> seen;
  for (const auto& kv : node_) {
    if (!kv.first.IsScalar()) fail("keys must be strings");
    const std::string& k = kv.first.Scalar();
    const std::string where = path_.empty() ? k : path_ + "." + k;
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) throw Error(where + ": unknown field");
    if (!seen.insert(k).second) throw Error(where + ": given twice");
  }
}

std::optional<Field> Field::get(std::string_view key) const {
  if (!node_.IsMap()) return std::nullopt;
  const YAML::Node v = node_[std::string(key)];
  if (!v.IsDefined()) return std::nullopt;
  return Field(v, path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key));
}

Field Field::require(std::string_view key) const {
  std::optional<Field> v = get(key);
  if (!v)
    throw Error(path_.empty() ? fmt::format("{}: required", key)
                              : fmt::format("{}.{}: required", path_, key));
  return *v;
}

std::vector<Field> Field::items() const {
  std::vector<Field> out;
  if (node_.IsNull()) return out;
  if (!node_.IsSequence()) fail("must be a list (got {})", describe());
  for (std::size_t i = 0; i < node_.size(); ++i) out.emplace_back(node_[i], fmt::format("{}[{}]", path_, i));
  return out;
}

std::string Field::scalar(std::string_view what) const {
  if (!node_.IsScalar()) fail("must be {} (got {})", what, describe());
  return node_.Scalar();
}

std::string Field::string() const {
  return scalar("a string");
}

int64_t Field::integer() const {
  const std::string s = scalar("an integer");
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (!plain(node_) || ec != std::errc() || end != s.data() + s.size())
    fail("must be an integer (got {})", describe());
  return v;
}

double Field::number() const {
  const std::string s = scalar("a number");
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (!plain(node_) || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v))
    fail("must be a number (got {})", describe());
  return v;
}

bool Field::boolean() const {
  const std::string s = scalar("true or false");
  if (plain(node_) && (s == "true" || s == "True" || s == "TRUE")) return true;
  if (plain(node_) && (s == "false" || s == "False" || s == "FALSE")) return false;
  fail("must be true or false (got {})", describe());
}

std::vector<std::string> Field::string_list() const {
  std::vector<std::string> out;
  for (const Field& item : items()) out.push_back(item.string());
  return out;
}

std::map<std::string, std::string> Field::string_map() const {
  std::map<std::string, std::string> out;
  if (node_.IsNull()) return out;
  if (!node_.IsMap()) fail("must be a mapping of strings (got {})", describe());
  for (const auto& kv : node_) {
    if (!kv.first.IsScalar()) fail("keys must be strings");
    const Field value(kv.second, fmt::format("{}.{}", path_, kv.first.Scalar()));
    if (!out.emplace(kv.first.Scalar(), value.string()).second) value.fail("given twice");
  }
  return out;
}

}  // namespace llmd::cluster
