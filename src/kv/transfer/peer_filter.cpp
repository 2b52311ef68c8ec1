#include "kv/transfer/peer_filter.hpp"

#include <charconv>
#include <string>

#include "common/error.hpp"

namespace llmd::kv::transfer {
namespace {

std::array<uint8_t, 16> as_v6_bytes(const asio::ip::address& a) {
  if (a.is_v4()) return asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4()).to_bytes();
  return a.to_v6().to_bytes();
}

}  // namespace

PeerFilter PeerFilter::parse(std::string_view list) {
  PeerFilter f;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view entry = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    if (entry.empty()) continue;
    const size_t slash = entry.find('/');
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(std::string(entry.substr(0, slash)), ec);
    if (ec) fail("--kv-transfer-allow: '{}' is not an address or a prefix", entry);
    const int max_bits = addr.is_v4() ? 32 : 128;
    int bits = max_bits;
    if (slash != std::string_view::npos) {
      const std::string_view b = entry.substr(slash + 1);
      const auto [end, err] = std::from_chars(b.data(), b.data() + b.size(), bits);
      if (err != std::errc() || end != b.data() + b.size() || bits < 0 || bits > max_bits)
        fail("--kv-transfer-allow: '{}' has a prefix length outside 0..{}", entry, max_bits);
    }
    f.prefixes_.push_back({as_v6_bytes(addr), addr.is_v4() ? bits + 96 : bits});
  }
  return f;
}

bool PeerFilter::allows(const asio::ip::address& a) const {
  if (prefixes_.empty()) return true;
  const std::array<uint8_t, 16> b = as_v6_bytes(a);
  for (const Prefix& p : prefixes_) {
    int left = p.bits;
    bool match = true;
    for (size_t i = 0; i < 16 && left > 0 && match; ++i, left -= 8) {
      const auto mask = static_cast<uint8_t>(left >= 8 ? 0xff : 0xff << (8 - left));
      match = (b[i] & mask) == (p.bytes[i] & mask);
    }
    if (match) return true;
  }
  return false;
}

}  // namespace llmd::kv::transfer
