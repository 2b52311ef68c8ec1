#pragma once
// Which addresses may open a KV transfer connection (--kv-transfer-allow): the model servers of the
// cluster, as addresses or CIDR prefixes ("10.0.0.0/8,192.168.1.7,fd00::/8"). Empty allows any
// address; the shared secret is checked either way. IPv4-mapped IPv6 peers match IPv4 entries.
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/asio.hpp"

namespace llmd::kv::transfer {

class PeerFilter {
 public:
  PeerFilter() = default;
  // Throws llmd::Error naming the entry that is not an address or a prefix.
  static PeerFilter parse(std::string_view list);

  bool empty() const { return prefixes_.empty(); }
  bool allows(const asio::ip::address& a) const;

 private:
  struct Prefix {
    std::array<uint8_t, 16> bytes{};  // IPv4 as IPv4-mapped IPv6
    int bits = 128;
  };
  std::vector<Prefix> prefixes_;
};

}  // namespace llmd::kv::transfer
