#include "common/prometheus_text.hpp"

#include <charconv>
#include <cmath>
#include <string>

namespace llmd::prometheus {
namespace {

bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

std::optional<double> number(std::string_view v) {
  if (v == "+Inf" || v == "Inf") return INFINITY;
  if (v == "-Inf") return -INFINITY;
  if (v == "NaN") return NAN;
  double d = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  if (ec != std::errc() || end != v.data() + v.size()) return std::nullopt;
  return d;
}

// The end of the label block starting after '{': the index of its '}', skipping quoted values.
std::size_t labels_end(std::string_view s) {
  bool quoted = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        quoted = false;
    } else if (c == '"') {
      quoted = true;
    } else if (c == '}') {
      return i;
    }
  }
  return std::string_view::npos;
}

}  // namespace

std::size_t parse(std::string_view text, const std::function<void(const Sample&)>& on_sample) {
  std::size_t bad = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    Sample s;
    std::size_t i = 0;
    while (i < line.size() && name_char(line[i], i == 0)) ++i;
    if (i == 0) {
      ++bad;
      continue;
    }
    s.name = line.substr(0, i);
    std::string_view rest = line.substr(i);
    if (!rest.empty() && rest.front() == '{') {
      const std::size_t close = labels_end(rest.substr(1));
      if (close == std::string_view::npos) {
        ++bad;
        continue;
      }
      s.labels = rest.substr(1, close);
      rest.remove_prefix(close + 2);
    }
    if (rest.empty() || (rest.front() != ' ' && rest.front() != '\t')) {
      ++bad;
      continue;
    }
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    const std::string_view value = rest.substr(0, rest.find_first_of(" \t"));  // a timestamp may follow
    const auto v = number(value);
    if (!v) {
      ++bad;
      continue;
    }
    s.value = *v;
    on_sample(s);
  }
  return bad;
}

std::optional<std::string_view> label(std::string_view labels, std::string_view key) {
  std::size_t pos = 0;
  while (pos < labels.size()) {
    while (pos < labels.size() && (labels[pos] == ' ' || labels[pos] == ',')) ++pos;
    const std::size_t eq = labels.find('=', pos);
    if (eq == std::string_view::npos || eq + 1 >= labels.size() || labels[eq + 1] != '"') return std::nullopt;
    const std::string_view k = labels.substr(pos, eq - pos);
    std::size_t end = eq + 2;
    while (end < labels.size() && labels[end] != '"') end += labels[end] == '\\' ? 2 : 1;
    if (end >= labels.size()) return std::nullopt;
    if (k == key) return labels.substr(eq + 2, end - eq - 2);
    pos = end + 1;
  }
  return std::nullopt;
}

}  // namespace llmd::prometheus
