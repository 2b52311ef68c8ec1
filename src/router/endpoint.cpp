#include "router/endpoint.hpp"

#include <charconv>

#include <fmt/format.h>

#include "common/base64.hpp"
#include "common/error.hpp"

namespace llmd::router {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string EndpointSpec::address() const {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                             : fmt::format("{}:{}", host, port);
}

EndpointSpec parse_endpoint_spec(std::string_view text) {
  text = trim(text);
  const std::size_t semi = text.find(';');
  const std::string_view addr = trim(text.substr(0, semi));
  EndpointSpec s;
  std::string_view host, port;
  if (addr.starts_with('[')) {
    const std::size_t close = addr.find(']');
    if (close == std::string_view::npos || close + 1 >= addr.size() || addr[close + 1] != ':')
      fail("endpoint '{}': expected [IPv6]:PORT", text);
    host = addr.substr(1, close - 1);
    port = addr.substr(close + 2);
  } else {
    const std::size_t colon = addr.rfind(':');
    if (colon == std::string_view::npos) fail("endpoint '{}': expected HOST:PORT", text);
    host = addr.substr(0, colon);
    port = addr.substr(colon + 1);
  }
  unsigned p = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (host.empty() || ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535)
    fail("endpoint '{}': expected HOST:PORT with a port in 1..65535", text);
  s.host.assign(host);
  s.port = static_cast<uint16_t>(p);
  std::string_view rest = semi == std::string_view::npos ? std::string_view{} : text.substr(semi + 1);
  while (!rest.empty()) {
    const std::size_t next = rest.find(';');
    const std::string_view kv = trim(rest.substr(0, next));
    rest = next == std::string_view::npos ? std::string_view{} : rest.substr(next + 1);
    if (kv.empty()) continue;
    const std::size_t eq = kv.find('=');
    if (eq == std::string_view::npos || eq == 0) fail("endpoint '{}': label '{}' is not KEY=VALUE", text, kv);
    std::string key(trim(kv.substr(0, eq)));
    if (key == "role") key = kRoleLabel;
    s.labels[key] = std::string(trim(kv.substr(eq + 1)));
  }
  return s;
}

std::vector<EndpointSpec> parse_endpoint_list(std::string_view text) {
  std::vector<EndpointSpec> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t end = text.find_first_of(",\n", pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view item = text.substr(pos, end - pos);
    pos = end + 1;
    if (const std::size_t hash = item.find('#'); hash != std::string_view::npos) item = item.substr(0, hash);
    if (!trim(item).empty()) out.push_back(parse_endpoint_spec(item));
  }
  return out;
}

Endpoint::Endpoint(EndpointId id, EndpointSpec spec)
    : id_(id), spec_(std::move(spec)), address_(spec_.address()), session_token_(base64_encode(address_)) {}

std::string_view Endpoint::label(std::string_view key) const {
  const auto it = spec_.labels.find(key);
  return it == spec_.labels.end() ? std::string_view{} : std::string_view(it->second);
}

}  // namespace llmd::router
