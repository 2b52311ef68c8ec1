#include "kv/transfer/client_handshake.hpp"

#include <string>

#include "kv/transfer/auth.hpp"
#include "kv/transfer/socket_io.hpp"

namespace llmd::kv::transfer {

asio::awaitable<std::expected<wire::Hello, XferError>> connect_and_authenticate(
    tcp::socket& sock, Deadline& deadline, std::vector<uint8_t>& payload, const PeerInfo& peer,
    const TransferConfig& cfg, const Authenticator& auth, const KvLayout& layout,
    std::string_view fingerprint) {
  error_code ec;
  tcp::resolver resolver(sock.get_executor());
  const auto endpoints = co_await resolver.async_resolve(peer.host, std::to_string(peer.port), ec_token(ec));
  if (ec) co_return std::unexpected(XferError::kConnect);
  // One endpoint at a time, the options set before connect (the window scale is fixed by the SYN).
  ec = asio::error::host_not_found;
  for (const auto& e : endpoints) {
    error_code ignored;
    sock.close(ignored);
    sock.open(e.endpoint().protocol(), ec);
    if (ec) continue;
    set_transfer_options(sock, cfg.socket_buffer_bytes);
    deadline.expires_after(cfg.connect_timeout);
    co_await sock.async_connect(e.endpoint(), ec_token(ec));
    if (!ec) break;
  }
  if (ec) co_return std::unexpected(deadline.expired() ? XferError::kTimeout : XferError::kConnect);

  deadline.expires_after(cfg.auth_timeout);
  auto h = co_await read_control_frame(sock, deadline, payload, false);
  wire::Hello hello;
  if (!h || h->type != wire::FrameType::kHello) co_return std::unexpected(handshake_error(h));
  if (!wire::decode(payload, hello)) co_return std::unexpected(XferError::kProtocol);
  const wire::Nonce nonce_c = random_nonce();
  wire::Bytes f;
  wire::encode(wire::Auth{nonce_c, auth.client_mac(hello.nonce, nonce_c)}, f);
  if (auto w = co_await write_all(sock, deadline, f); !w) co_return std::unexpected(w.error());
  h = co_await read_control_frame(sock, deadline, payload, false);
  if (!h) co_return std::unexpected(h.error());
  if (auto ok =
          check_server_reply(h->type, payload, auth, hello, nonce_c, layout, fingerprint, peer.engine_id);
      !ok)
    co_return std::unexpected(ok.error());
  deadline.expires_never();
  co_return hello;
}

}  // namespace llmd::kv::transfer
