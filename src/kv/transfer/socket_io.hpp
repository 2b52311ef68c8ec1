#pragma once
// Socket helpers shared by the transfer server and the backends: options, whole-frame reads and
// writes under a deadline (TCP and Unix sockets alike), and what a failed operation means as an
// XferError.
//
// Threading: the socket's executor only.
#include <array>
#include <cstdint>
#include <expected>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "common/asio.hpp"
#include "common/deadline.hpp"
#include "kv/transfer/wire.hpp"
#include "kv/transfer/xfer_error.hpp"

namespace llmd::kv::transfer {

using boost::system::error_code;
using tcp = asio::ip::tcp;

inline auto ec_token(error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

// TCP_NODELAY (a READ or the last BLOCK of a batch must not wait for Nagle) and socket buffers of
// `buffer_bytes`. Buffers are best set before connect/listen: the window scale is fixed at the SYN.
void set_transfer_options(tcp::socket& s, int buffer_bytes);

// The error a failed operation stands for: kTimeout when the deadline closed the socket; for the
// end of the stream (or a reset) kTruncated when `mid_transfer`, else kConnect.
template <class Socket>
XferError io_error(const error_code& ec, const BasicDeadline<Socket>& deadline, bool mid_transfer) {
  if (deadline.expired()) return XferError::kTimeout;
  const bool ended =
      ec == asio::error::eof || ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
  return ended && mid_transfer ? XferError::kTruncated : XferError::kConnect;
}

// Reads one control frame (header, then its payload into `payload`, whose size the header's cap bounds).
// A BLOCK or an unknown or oversized frame is kProtocol; socket failures map through io_error.
// For TCP and Unix sockets alike.
template <class Socket>
asio::awaitable<std::expected<wire::FrameHeader, XferError>> read_control_frame(
    Socket& s, BasicDeadline<Socket>& deadline, std::vector<uint8_t>& payload, bool mid_transfer) {
  std::array<uint8_t, wire::kFrameHeaderBytes> hb;
  error_code ec;
  co_await asio::async_read(s, asio::buffer(hb), ec_token(ec));
  if (ec) co_return std::unexpected(io_error(ec, deadline, mid_transfer));
  const auto h = wire::decode_header(hb);
  if (!h || h->type == wire::FrameType::kBlock) co_return std::unexpected(XferError::kProtocol);
  payload.resize(h->payload_len);  // <= wire::kMaxControlPayload, checked by decode_header
  co_await asio::async_read(s, asio::buffer(payload), ec_token(ec));
  if (ec) co_return std::unexpected(io_error(ec, deadline, mid_transfer));
  co_return *h;
}

// Writes `bytes` whole.
template <class Socket>
asio::awaitable<std::expected<void, XferError>> write_all(Socket& s, BasicDeadline<Socket>& deadline,
                                                          std::span<const uint8_t> bytes) {
  error_code ec;
  co_await asio::async_write(s, asio::buffer(bytes.data(), bytes.size()), ec_token(ec));
  if (ec) co_return std::unexpected(io_error(ec, deadline, false));
  co_return std::expected<void, XferError>{};
}

// A client connection's outgoing frames (the tcp and shm backends' Conn: sock, deadline, out,
// writing, pending, broken, fail_all): written one async_write at a time, in order, since concurrent
// writes on one socket interleave. A failed write fails every read pending on the connection.
template <class Conn>
asio::awaitable<void> write_queued(std::shared_ptr<Conn> c) {
  while (!c->out.empty() && !c->broken) {
    const wire::Bytes frame = std::move(c->out.front());
    c->out.pop_front();
    error_code ec;
    co_await asio::async_write(c->sock, asio::buffer(frame), ec_token(ec));
    if (ec) c->fail_all(io_error(ec, c->deadline, !c->pending.empty()));
  }
  c->out.clear();
  c->writing = false;
}
template <class Conn>
void send_frame(const std::shared_ptr<Conn>& c, wire::Bytes frame) {
  c->out.push_back(std::move(frame));
  if (c->writing) return;
  c->writing = true;
  asio::co_spawn(c->sock.get_executor(), write_queued(c), asio::detached);
}

// RELEASE(remote_request_id, outcome) on a client connection: sent, not acknowledged.
template <class Conn>
std::expected<void, XferError> send_release(const std::shared_ptr<Conn>& c,
                                            std::string_view remote_request_id, uint8_t outcome) {
  if (c->broken) return std::unexpected(*c->broken);
  wire::Bytes f;
  if (!wire::encode(wire::Release{std::string(remote_request_id), outcome}, f))
    return std::unexpected(XferError::kProtocol);
  send_frame(c, std::move(f));
  return {};
}

}  // namespace llmd::kv::transfer
