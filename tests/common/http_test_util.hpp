#pragma once
// Raw-socket helpers for the HTTP tests: real loopback sockets, so the tests see exactly the bytes
// (and the misbehaviour) a remote client would produce.
#include "common/asio.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>

namespace llmd::http::testing {

inline int count_open_fds() {
  int n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A blocking client socket with its own io_context.
class RawConn {
 public:
  explicit RawConn(std::uint16_t port) : sock_(ioc_) {
    sock_.connect({asio::ip::make_address("127.0.0.1"), port});
    sock_.set_option(asio::ip::tcp::no_delay(true));
  }
  void send(std::string_view bytes) { asio::write(sock_, asio::buffer(bytes.data(), bytes.size())); }
  // Everything until the server closes (or resets) the connection.
  std::string read_all() {
    std::string out;
    char buf[4096];
    boost::system::error_code ec;
    for (;;) {
      auto n = sock_.read_some(asio::buffer(buf), ec);
      out.append(buf, n);
      if (ec) return out;
    }
  }
  // Reads until `marker` has been seen (or the connection ends).
  std::string read_until(std::string_view marker) {
    char buf[4096];
    boost::system::error_code ec;
    while (pending_.find(marker) == std::string::npos) {
      auto n = sock_.read_some(asio::buffer(buf), ec);
      pending_.append(buf, n);
      if (ec) break;
    }
    auto pos = pending_.find(marker);
    auto end = pos == std::string::npos ? pending_.size() : pos + marker.size();
    std::string out = pending_.substr(0, end);
    pending_.erase(0, end);
    return out;
  }
  void close() {
    boost::system::error_code ec;
    sock_.close(ec);
  }
  asio::ip::tcp::socket& socket() { return sock_; }

 private:
  asio::io_context ioc_;
  asio::ip::tcp::socket sock_;
  std::string pending_;
};

// Polls `pred` until true or `timeout`.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

inline asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(asio::use_awaitable);
}

}  // namespace llmd::http::testing
