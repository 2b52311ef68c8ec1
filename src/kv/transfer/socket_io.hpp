#pragma once
// Socket helpers shared by the transfer server and the backends: options, whole-frame reads and
// writes under a deadline (TCP and Unix sockets alike), and what a failed operation means as an
// XferError.
//
// Threading: the socket's executor only.
#include <array>
#include <cstdint>
#include <expected>
#include <span>
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

}  // namespace llmd::kv::transfer
