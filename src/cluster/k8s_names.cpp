#include "cluster/k8s_names.hpp"

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <utility>

namespace llmd::cluster {
namespace {

bool alnum(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}
bool lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool label_name(std::string_view s) {
  if (s.empty() || s.size() > 63 || !alnum(s.front()) || !alnum(s.back())) return false;
  for (const char c : s)
    if (!alnum(c) && c != '-' && c != '_' && c != '.') return false;
  return true;
}

}  // namespace

bool is_dns1123_label(std::string_view s) {
  if (s.empty() || s.size() > 63 || !lower_alnum(s.front()) || !lower_alnum(s.back())) return false;
  for (const char c : s)
    if (!lower_alnum(c) && c != '-') return false;
  return true;
}

bool is_dns1123_subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t pos = 0;
  while (true) {
    const std::size_t dot = s.find('.', pos);
    if (!is_dns1123_label(s.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos)))
      return false;
    if (dot == std::string_view::npos) return true;
    pos = dot + 1;
  }
}

bool is_label_key(std::string_view s) {
  const std::size_t slash = s.find('/');
  if (slash == std::string_view::npos) return label_name(s);
  return is_dns1123_subdomain(s.substr(0, slash)) && label_name(s.substr(slash + 1));
}

bool is_label_value(std::string_view s) {
  return s.empty() || label_name(s);
}

std::optional<double> parse_quantity(std::string_view s) {
  // The number: sign, digits, at most one point, at least one digit.
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  const std::size_t number_start = i;
  bool digits = false, point = false;
  for (; i < s.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(s[i])))
      digits = true;
    else if (s[i] == '.' && !point)
      point = true;
    else
      break;
  }
  if (!digits) return std::nullopt;
  double value = 0;
  {
    // from_chars takes no leading '+'; the sign is applied below.
    const std::string_view num = s.substr(number_start, i - number_start);
    const auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), value);
    if (ec != std::errc() || end != num.data() + num.size()) return std::nullopt;
    if (s.front() == '-') value = -value;
  }
  const std::string_view suffix = s.substr(i);
  if (suffix.empty()) return value;
  static constexpr std::array<std::pair<std::string_view, double>, 15> kSuffixes = {{
      {"Ki", 0x1p10},
      {"Mi", 0x1p20},
      {"Gi", 0x1p30},
      {"Ti", 0x1p40},
      {"Pi", 0x1p50},
      {"Ei", 0x1p60},
      {"n", 1e-9},
      {"u", 1e-6},
      {"m", 1e-3},
      {"k", 1e3},
      {"M", 1e6},
      {"G", 1e9},
      {"T", 1e12},
      {"P", 1e15},
      {"E", 1e18},
  }};
  for (const auto& [name, scale] : kSuffixes)
    if (suffix == name) return value * scale;
  if (suffix.front() == 'e' || suffix.front() == 'E') {
    std::string_view exp = suffix.substr(1);
    if (!exp.empty() && exp.front() == '+') exp.remove_prefix(1);
    int e = 0;
    const auto [end, ec] = std::from_chars(exp.data(), exp.data() + exp.size(), e);
    if (exp.empty() || ec != std::errc() || end != exp.data() + exp.size()) return std::nullopt;
    return value * std::pow(10.0, e);
  }
  return std::nullopt;
}

}  // namespace llmd::cluster
