#pragma once
// A write handed to the kernel at once, without suspending: on a connection whose socket buffer has
// room (nearly every write a proxy makes) a non-blocking send takes the whole message, and the
// coroutine goes on. asio::async_write would make the same send, then post its completion and
// resume the coroutine from the scheduler: an operation, a queue round trip and a coroutine switch
// per write, two writes per proxied request.
//
//   std::size_t sent = write_now(socket, bufs, ec);   // the socket must be non-blocking
//   if (!ec && sent < asio::buffer_size(bufs))
//     co_await asio::async_write(socket, drop_front(bufs, sent), ...);  // the rest, when there is room
#include "common/asio.hpp"

#include <array>
#include <cstddef>

namespace llmd {

// What the kernel took of `bufs` now (all of it, usually). A full socket buffer (would_block) is
// not an error: it takes nothing, and the caller waits for room.
template <class Socket, std::size_t N>
std::size_t write_now(Socket& socket, const std::array<asio::const_buffer, N>& bufs,
                      boost::system::error_code& ec) {
  const std::size_t n = socket.write_some(bufs, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) ec.clear();
  return n;
}

// `bufs` without its first `n` bytes.
template <std::size_t N>
std::array<asio::const_buffer, N> drop_front(std::array<asio::const_buffer, N> bufs, std::size_t n) {
  for (auto& b : bufs) {
    const std::size_t k = std::min(n, b.size());
    b += k;
    n -= k;
  }
  return bufs;
}

}  // namespace llmd
