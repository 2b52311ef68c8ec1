#include "kv/transfer/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>

#include "common/error.hpp"

namespace llmd::kv::transfer {

wire::Mac hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> msg) {
  wire::Mac out{};
  unsigned int len = 0;
  // HMAC() with a NULL md_ctx cannot fail for SHA-256 short of an out-of-memory inside OpenSSL.
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), msg.data(), msg.size(), out.data(),
            &len) ||
      len != out.size())
    fail("HMAC-SHA256 failed");
  return out;
}

bool macs_equal(const wire::Mac& a, const wire::Mac& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

void random_bytes(std::span<uint8_t> out) {
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) fail("the random generator failed");
}

wire::Nonce random_nonce() {
  wire::Nonce n;
  random_bytes(n);
  return n;
}

std::string new_engine_id() {
  uint8_t b[16];
  random_bytes(b);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) {
    s += kHex[x >> 4];
    s += kHex[x & 15];
  }
  return s;
}

Authenticator::Authenticator(std::string secret) : secret_(std::move(secret)) {
  if (secret_.empty()) fail("KV transfer: an empty secret is refused");
}

Authenticator::~Authenticator() {
  OPENSSL_cleanse(secret_.data(), secret_.size());
}

wire::Mac Authenticator::client_mac(const wire::Nonce& nonce_s, const wire::Nonce& nonce_c) const {
  return mac("llmd-kvt/1 c", nonce_s, nonce_c);
}

wire::Mac Authenticator::server_mac(const wire::Nonce& nonce_c, const wire::Nonce& nonce_s) const {
  return mac("llmd-kvt/1 s", nonce_c, nonce_s);
}

wire::Mac Authenticator::mac(std::string_view label, const wire::Nonce& first,
                             const wire::Nonce& second) const {
  uint8_t msg[12 + 32 + 32];
  static_assert(sizeof("llmd-kvt/1 c") - 1 == 12);
  std::memcpy(msg, label.data(), 12);
  std::memcpy(msg + 12, first.data(), 32);
  std::memcpy(msg + 44, second.data(), 32);
  return hmac_sha256({reinterpret_cast<const uint8_t*>(secret_.data()), secret_.size()}, msg);
}

std::expected<void, XferError> check_server_reply(wire::FrameType type, std::span<const uint8_t> payload,
                                                  const Authenticator& auth, const wire::Hello& hello,
                                                  const wire::Nonce& nonce_c, const KvLayout& layout,
                                                  std::string_view fingerprint, std::string_view engine_id) {
  if (type == wire::FrameType::kError) {
    wire::Error e;
    if (!wire::decode(payload, e)) return std::unexpected(XferError::kProtocol);
    return std::unexpected(xfer_error_from_wire(e.code).value_or(XferError::kProtocol));
  }
  wire::AuthOk ok;
  if (type != wire::FrameType::kAuthOk || !wire::decode(payload, ok))
    return std::unexpected(XferError::kProtocol);
  // The server proves it knows the secret too: otherwise anyone could pose as a prefill server.
  if (!auth.check_server(nonce_c, hello.nonce, ok.mac)) return std::unexpected(XferError::kAuth);
  if (hello.layout != layout || hello.fingerprint != fingerprint)
    return std::unexpected(XferError::kIncompatible);
  if (!engine_id.empty() && hello.engine_id != engine_id) return std::unexpected(XferError::kEngineRestarted);
  return {};
}

}  // namespace llmd::kv::transfer
