#include "kv/transfer/peer_filter.hpp"

#include <gtest/gtest.h>

#include "common/error.hpp"

namespace llmd::kv::transfer {
namespace {

asio::ip::address ip(const char* s) {
  return asio::ip::make_address(s);
}

TEST(PeerFilter, EmptyAllowsEveryone) {
  const PeerFilter f = PeerFilter::parse("");
  EXPECT_TRUE(f.empty());
  EXPECT_TRUE(f.allows(ip("203.0.113.9")));
  EXPECT_TRUE(f.allows(ip("::1")));
}

TEST(PeerFilter, AddressesAndPrefixesOfBothFamilies) {
  const PeerFilter f = PeerFilter::parse("10.1.0.0/16,192.168.7.7,fd00::/8,127.0.0.1");
  EXPECT_TRUE(f.allows(ip("10.1.255.3")));
  EXPECT_FALSE(f.allows(ip("10.2.0.1")));
  EXPECT_TRUE(f.allows(ip("192.168.7.7")));
  EXPECT_FALSE(f.allows(ip("192.168.7.8")));
  EXPECT_TRUE(f.allows(ip("fd12:3456::1")));
  EXPECT_FALSE(f.allows(ip("fe80::1")));
  EXPECT_TRUE(f.allows(ip("::ffff:10.1.2.3")));  // an IPv4 peer on a dual-stack socket
  EXPECT_FALSE(f.allows(ip("::1")));
  EXPECT_TRUE(f.allows(ip("127.0.0.1")));
  const PeerFilter odd = PeerFilter::parse("10.0.0.0/9");  // a prefix not on a byte boundary
  EXPECT_TRUE(odd.allows(ip("10.127.0.1")));
  EXPECT_FALSE(odd.allows(ip("10.128.0.1")));
  EXPECT_TRUE(PeerFilter::parse("0.0.0.0/0").allows(ip("8.8.8.8")));
  EXPECT_FALSE(PeerFilter::parse("0.0.0.0/0").allows(ip("2001:db8::1")));  // IPv4 only
}

TEST(PeerFilter, BadEntriesNameThemselves) {
  for (const auto& [list, what] : std::vector<std::pair<const char*, const char*>>{
           {"10.0.0.0/33", "'10.0.0.0/33' has a prefix length outside 0..32"},
           {"fd00::/129", "'fd00::/129' has a prefix length outside 0..128"},
           {"10.0.0.0/x", "'10.0.0.0/x' has a prefix length outside 0..32"},
           {"10.0.0.1,server-a", "'server-a' is not an address or a prefix"},
           {"10.0.0.0/", "'10.0.0.0/' has a prefix length outside 0..32"}}) {
    try {
      PeerFilter::parse(list);
      ADD_FAILURE() << list;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), std::string("--kv-transfer-allow: ") + what);
    }
  }
}

}  // namespace
}  // namespace llmd::kv::transfer
