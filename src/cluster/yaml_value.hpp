#pragma once
// A YAML document as a value tree whose maps keep insertion order, and its emitter. The renderer
// builds Kubernetes objects with it so the output is byte-for-byte the same on every run (yaml-cpp's
// emitter leaves strings such as "8000" or "yes" plain, which Kubernetes then reads as numbers or
// booleans; this one quotes every string that another YAML reader could take for something else).
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmd::cluster::yaml {

class Value {
 public:
  enum class Kind { kNull, kBool, kInt, kString, kPlain, kList, kMap };
  using Entry = std::pair<std::string, Value>;

  Value() = default;  // null
  Value(const char* s) : kind_(Kind::kString), text_(s) {}
  Value(std::string s) : kind_(Kind::kString), text_(std::move(s)) {}
  Value(std::string_view s) : kind_(Kind::kString), text_(s) {}
  Value(int32_t v) : kind_(Kind::kInt), int_(v) {}
  Value(int64_t v) : kind_(Kind::kInt), int_(v) {}
  Value(bool v) : kind_(Kind::kBool), bool_(v) {}

  // A plain scalar read from another YAML document (a number, a boolean or a string written
  // without quotes), written back as it was so its type is what the author's reader saw.
  static Value plain(std::string text);
  static Value list(std::initializer_list<Value> items = {});
  static Value map(std::initializer_list<Entry> entries = {});

  Kind kind() const { return kind_; }
  const std::string& text() const { return text_; }  // kString, kPlain
  int64_t integer() const { return int_; }
  bool boolean() const { return bool_; }
  const std::vector<Value>& items() const { return items_; }
  const std::vector<Entry>& entries() const { return entries_; }
  bool empty() const { return items_.empty() && entries_.empty(); }

  // Map: appends key (throws llmd::Error when it is there already). Returns the new value.
  Value& set(std::string key, Value v);
  // Map: the value of key, nullptr when absent.
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  // List: appends.
  Value& push(Value v);

 private:
  Kind kind_ = Kind::kNull;
  std::string text_;
  int64_t int_ = 0;
  bool bool_ = false;
  std::vector<Value> items_;
  std::vector<Entry> entries_;
};

// One document in block style: two-space indent, lists at their key's column (as kubectl writes
// them), multi-line strings as literal blocks. Ends with a newline.
std::string emit(const Value& doc);

// Whether s can be written without quotes and still read back as this same string by YAML 1.1
// and 1.2 readers (go-yaml reads "yes" and "on" as booleans, "0777" as a number, ...).
bool is_plain_string(std::string_view s);

}  // namespace llmd::cluster::yaml
