#include "kv/transfer/auth.hpp"

#include <gtest/gtest.h>

#include <string_view>

#include "common/error.hpp"

namespace llmd::kv::transfer {
namespace {

std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string hex(std::span<const uint8_t> b) {
  std::string s;
  for (uint8_t x : b) s += fmt::format("{:02x}", x);
  return s;
}

TEST(TransferAuth, Rfc4231TestCase2) {
  EXPECT_EQ(hex(hmac_sha256(bytes("Jefe"), bytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(TransferAuth, MutualMacsCheckBothWays) {
  const Authenticator server("s3cret"), client("s3cret");
  const wire::Nonce ns = random_nonce(), nc = random_nonce();
  EXPECT_NE(ns, nc);
  const wire::Mac mc = client.client_mac(ns, nc);
  EXPECT_TRUE(server.check_client(ns, nc, mc));
  const wire::Mac ms = server.server_mac(nc, ns);
  EXPECT_TRUE(client.check_server(nc, ns, ms));
  // The labels differ: the client's answer is not the server's (no reflection).
  EXPECT_NE(mc, ms);
  EXPECT_FALSE(client.check_server(nc, ns, mc));
}

TEST(TransferAuth, WrongSecretIsRefusedBothWays) {
  const Authenticator server("s3cret"), client("other");
  const wire::Nonce ns = random_nonce(), nc = random_nonce();
  EXPECT_FALSE(server.check_client(ns, nc, client.client_mac(ns, nc)));
  EXPECT_FALSE(client.check_server(nc, ns, server.server_mac(nc, ns)));
}

TEST(TransferAuth, SwappedOrReplayedNoncesAreRefused) {
  const Authenticator a("k");
  const wire::Nonce ns = random_nonce(), nc = random_nonce();
  const wire::Mac mc = a.client_mac(ns, nc);
  EXPECT_FALSE(a.check_client(nc, ns, mc));
  EXPECT_FALSE(a.check_client(random_nonce(), nc, mc));  // an old answer to a new challenge
  wire::Mac flipped = mc;
  flipped[31] ^= 1;
  EXPECT_FALSE(a.check_client(ns, nc, flipped));
}

TEST(TransferAuth, EmptySecretIsRefused) {
  EXPECT_THROW(Authenticator(""), Error);
}

TEST(TransferAuth, EngineIdsAre128RandomBits) {
  const std::string a = new_engine_id(), b = new_engine_id();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

}  // namespace
}  // namespace llmd::kv::transfer
