#pragma once
// The reader's side of a TCP transfer connection, shared by the tcp and ucx backends: connect, then
// HELLO -> AUTH -> AUTH_OK, authenticating the server and checking its layout, fingerprint and
// engine id (check_server_reply).
//
// Threading: the socket's executor.
#include <cstdint>
#include <expected>
#include <string_view>
#include <vector>

#include "common/asio.hpp"
#include "common/deadline.hpp"
#include "kv/transfer/layout.hpp"
#include "kv/transfer/transfer_backend.hpp"
#include "kv/transfer/transfer_config.hpp"
#include "kv/transfer/wire.hpp"

namespace llmd::kv::transfer {

class Authenticator;

// What a first frame that is not the one expected means: its read's error, else kProtocol.
inline XferError handshake_error(const std::expected<wire::FrameHeader, XferError>& h) {
  return h ? XferError::kProtocol : h.error();
}

// Connects `sock` to peer.host:peer.port (one resolved address at a time, the transfer socket options
// set before the SYN, within cfg.connect_timeout) and authenticates both ways within cfg.auth_timeout.
// Returns the server's HELLO; `deadline` is left expiring never.
asio::awaitable<std::expected<wire::Hello, XferError>> connect_and_authenticate(
    asio::ip::tcp::socket& sock, Deadline& deadline, std::vector<uint8_t>& payload, const PeerInfo& peer,
    const TransferConfig& cfg, const Authenticator& auth, const KvLayout& layout,
    std::string_view fingerprint);

}  // namespace llmd::kv::transfer
