#pragma once
// Socket helpers shared by the transfer server and the tcp backend: options, whole-frame reads and
// writes under a Deadline, and what a failed socket operation means as an XferError.
//
// Threading: the socket's executor only.
#include <cstdint>
#include <expected>
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
XferError io_error(const error_code& ec, const Deadline& deadline, bool mid_transfer);

// Reads one control frame (header, then its payload into `payload`, whose size the header's cap bounds).
// A BLOCK or an unknown or oversized frame is kProtocol; socket failures map through io_error.
asio::awaitable<std::expected<wire::FrameHeader, XferError>> read_control_frame(tcp::socket& s,
                                                                                Deadline& deadline,
                                                                                std::vector<uint8_t>& payload,
                                                                                bool mid_transfer);

// Writes `bytes` whole.
asio::awaitable<std::expected<void, XferError>> write_all(tcp::socket& s, Deadline& deadline,
                                                          std::span<const uint8_t> bytes);

}  // namespace llmd::kv::transfer
