#include "kv/transfer/socket_io.hpp"

#include <array>

namespace llmd::kv::transfer {

void set_transfer_options(tcp::socket& s, int buffer_bytes) {
  error_code ignored;  // a kernel that caps the buffers (net.core.*mem_max) still works, only slower
  s.set_option(tcp::no_delay(true), ignored);
  s.set_option(asio::socket_base::send_buffer_size(buffer_bytes), ignored);
  s.set_option(asio::socket_base::receive_buffer_size(buffer_bytes), ignored);
}

XferError io_error(const error_code& ec, const Deadline& deadline, bool mid_transfer) {
  if (deadline.expired()) return XferError::kTimeout;
  const bool ended =
      ec == asio::error::eof || ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
  return ended && mid_transfer ? XferError::kTruncated : XferError::kConnect;
}

asio::awaitable<std::expected<wire::FrameHeader, XferError>> read_control_frame(tcp::socket& s,
                                                                                Deadline& deadline,
                                                                                std::vector<uint8_t>& payload,
                                                                                bool mid_transfer) {
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

asio::awaitable<std::expected<void, XferError>> write_all(tcp::socket& s, Deadline& deadline,
                                                          std::span<const uint8_t> bytes) {
  error_code ec;
  co_await asio::async_write(s, asio::buffer(bytes.data(), bytes.size()), ec_token(ec));
  if (ec) co_return std::unexpected(io_error(ec, deadline, false));
  co_return std::expected<void, XferError>{};
}

}  // namespace llmd::kv::transfer
