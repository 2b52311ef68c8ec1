#pragma once
// Mutual authentication of a transfer connection by a shared secret (issue 6 design §4): the server
// sends nonce_s in HELLO; the client answers AUTH(nonce_c, HMAC(secret, "llmd-kvt/1 c" ‖ nonce_s ‖
// nonce_c)); the server answers AUTH_OK(HMAC(secret, "llmd-kvt/1 s" ‖ nonce_c ‖ nonce_s)). Each side
// proves it knows the secret without sending it, the two labels keep one side's answer from being
// replayed as the other's, and fresh nonces keep an old exchange from being replayed.
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>

#include "kv/transfer/layout.hpp"
#include "kv/transfer/wire.hpp"
#include "kv/transfer/xfer_error.hpp"

namespace llmd::kv::transfer {

// HMAC-SHA256 (RFC 2104 with SHA-256) of msg under key.
wire::Mac hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> msg);

// Constant-time equality (CRYPTO_memcmp): a timing difference would tell an attacker how many
// leading bytes of a guessed MAC were right.
bool macs_equal(const wire::Mac& a, const wire::Mac& b);

// Cryptographically random bytes (RAND_bytes); throws llmd::Error if the generator fails.
void random_bytes(std::span<uint8_t> out);
wire::Nonce random_nonce();
// 128 random bits as 32 hex digits: names one server process (a restarted one has another).
std::string new_engine_id();

class Authenticator {
 public:
  // Throws llmd::Error for an empty secret: a transfer port without one would serve anyone's KV.
  explicit Authenticator(std::string secret);
  ~Authenticator();  // wipes the secret
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  wire::Mac client_mac(const wire::Nonce& nonce_s, const wire::Nonce& nonce_c) const;
  wire::Mac server_mac(const wire::Nonce& nonce_c, const wire::Nonce& nonce_s) const;
  bool check_client(const wire::Nonce& nonce_s, const wire::Nonce& nonce_c, const wire::Mac& mac) const {
    return macs_equal(client_mac(nonce_s, nonce_c), mac);
  }
  bool check_server(const wire::Nonce& nonce_c, const wire::Nonce& nonce_s, const wire::Mac& mac) const {
    return macs_equal(server_mac(nonce_c, nonce_s), mac);
  }

 private:
  wire::Mac mac(std::string_view label, const wire::Nonce& first, const wire::Nonce& second) const;
  std::string secret_;
};

// The client's side of the handshake, after its AUTH: the server's reply (a frame of `type` with
// `payload`) must be AUTH_OK proving the secret (an ERROR names why the server refused), and its
// HELLO must describe an engine whose blocks can land here: the same layout and model fingerprint,
// and `engine_id` when one is expected (another one restarted and lost its pins).
std::expected<void, XferError> check_server_reply(wire::FrameType type, std::span<const uint8_t> payload,
                                                  const Authenticator& auth, const wire::Hello& hello,
                                                  const wire::Nonce& nonce_c, const KvLayout& layout,
                                                  std::string_view fingerprint, std::string_view engine_id);

}  // namespace llmd::kv::transfer
