#pragma once
// A node of a parsed YAML document together with its field path ("spec.decode.replicas"), read
// strictly: a wrong type, an unknown or repeated key is an llmd::Error that starts with the path.
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace llmd::cluster {

class Field {
 public:
  Field(YAML::Node node, std::string path) : node_(std::move(node)), path_(std::move(path)) {}

  const std::string& path() const { return path_; }
  const YAML::Node& node() const { return node_; }
  bool is_null() const { return node_.IsNull(); }

  // A mapping (null reads as an empty one) whose keys are all in `keys`, none twice.
  void expect_keys(std::span<const std::string_view> keys) const;
  // The value of `key` in a mapping checked by expect_keys; nullopt when absent.
  std::optional<Field> get(std::string_view key) const;
  bool has(std::string_view key) const { return get(key).has_value(); }
  // get, or "<path>.<key>: required".
  Field require(std::string_view key) const;

  // A list (null reads as an empty one) and its items, named path[i].
  std::vector<Field> items() const;

  std::string string() const;  // any scalar
  int64_t integer() const;     // an unquoted integer
  double number() const;       // an unquoted finite number
  bool boolean() const;        // true or false
  std::vector<std::string> string_list() const;
  std::map<std::string, std::string> string_map() const;

  // "<path>: <message>".
  template <class... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) const {
    fail_message(fmt::format(f, std::forward<Args>(args)...));
  }
  [[noreturn]] void fail_message(const std::string& message) const;

  // What the value is, for "(got ...)": "a mapping", "a list", "null" or the quoted scalar.
  std::string describe() const;

 private:
  std::string scalar(std::string_view what) const;

  YAML::Node node_;
  std::string path_;
};

// A string quoted for an error message: "x" with " and \ escaped.
std::string quote(std::string_view s);

}  // namespace llmd::cluster
