#pragma once
// HTTP header list shared by the server and the client. Field names are case-insensitive
// (RFC 9110); order and duplicates are kept because proxies (the router) forward them as they came.
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmd::http {

bool iequals(std::string_view a, std::string_view b);

// A header field borrowed from elsewhere: a parsed head, or strings the caller keeps alive.
struct FieldView {
  std::string_view name;
  std::string_view value;  // without surrounding whitespace
};

class Headers {
 public:
  Headers() = default;
  Headers(std::initializer_list<std::pair<std::string, std::string>> init) : fields_(init) {}

  // The first value of `name`, if present.
  std::optional<std::string_view> get(std::string_view name) const {
    for (const auto& [k, v] : fields_)
      if (iequals(k, name)) return v;
    return std::nullopt;
  }
  std::string get_or(std::string_view name, std::string_view fallback) const {
    auto v = get(name);
    return std::string(v ? *v : fallback);
  }
  bool contains(std::string_view name) const { return get(name).has_value(); }

  void reserve(std::size_t n) { fields_.reserve(n); }
  // Replaces the list with `fields` (anything with .name and .value), reusing the strings already
  // held: a connection parsing request after request allocates nothing for fields that fit them.
  template <class Fields>
  void assign(const Fields& fields) {
    fields_.resize(fields.size());
    auto out = fields_.begin();
    for (const auto& f : fields) {
      out->first.assign(f.name);
      out->second.assign(f.value);
      ++out;
    }
  }
  void add(std::string name, std::string value) { fields_.emplace_back(std::move(name), std::move(value)); }
  // Replaces every existing `name` with one field.
  void set(std::string name, std::string value) {
    erase(name);
    add(std::move(name), std::move(value));
  }
  void erase(std::string_view name) {
    std::erase_if(fields_, [&](const auto& f) { return iequals(f.first, name); });
  }

  auto begin() const { return fields_.begin(); }
  auto end() const { return fields_.end(); }
  std::size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

// Header fields to write, borrowed for the call: a Headers, or views (a proxy's per-request fields,
// so that relaying a request does not copy each name and value into a string of its own).
class FieldsRef {
 public:
  FieldsRef() = default;
  FieldsRef(const Headers& h) : headers_(&h) {}           // NOLINT: implicit by design
  FieldsRef(std::span<const FieldView> f) : views_(f) {}  // NOLINT: implicit by design
  // `first`, then the fields of `h` whose names `keep` accepts (a proxy relaying a response's).
  FieldsRef(std::span<const FieldView> first, const Headers& h, bool (*keep)(std::string_view name))
      : headers_(&h), views_(first), keep_(keep) {}

  // Calls f(name, value) for each field, in order.
  template <class F>
  void each(F&& f) const {
    for (const FieldView& v : views_) f(v.name, v.value);
    if (headers_)
      for (const auto& [k, v] : *headers_)
        if (!keep_ || keep_(k)) f(std::string_view(k), std::string_view(v));
  }
  bool contains(std::string_view name) const {
    bool found = false;
    each([&](std::string_view k, std::string_view) { found = found || iequals(k, name); });
    return found;
  }

 private:
  const Headers* headers_ = nullptr;
  std::span<const FieldView> views_;
  bool (*keep_)(std::string_view) = nullptr;
};

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = char(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = char(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace llmd::http
