#pragma once
// A connection's time limit, as one timer re-armed lazily: setting a deadline is a store, and the
// timer, when it wakes, re-arms for the deadline as it is then. Beast's tcp_stream armed and
// cancelled a timer around every read and write, about ten timer-queue updates per proxied request.
// A deadline that passes closes the socket, which ends whatever operation is pending on it.
//
// Threading: use from the socket's executor only (as every operation on the socket is).
// Any Asio socket with close(error_code&) and get_executor(): TCP (Deadline) and Unix ones.
#include "common/asio.hpp"

#include <chrono>
#include <memory>

namespace llmd {

template <class Socket>
class BasicDeadline {
 public:
  using Clock = std::chrono::steady_clock;

  explicit BasicDeadline(Socket& socket) : st_(std::make_shared<State>(socket)) {}
  ~BasicDeadline() {
    st_->socket = nullptr;  // a wake-up already queued finds nothing to close
    st_->timer.cancel();
  }
  BasicDeadline(const BasicDeadline&) = delete;
  BasicDeadline& operator=(const BasicDeadline&) = delete;

  void expires_after(Clock::duration d) { expires_at(Clock::now() + d); }
  void expires_at(Clock::time_point t) {
    st_->deadline = t;
    if (st_->deadline < st_->armed) arm(st_);
  }
  void expires_never() { st_->deadline = Clock::time_point::max(); }
  // expires_never(), and the timer's pending wait is withdrawn too: for a connection that goes idle
  // in a pool, whose wait would otherwise keep an io_context's run() from returning.
  void disarm() {
    expires_never();
    st_->armed = Clock::time_point::max();
    st_->timer.cancel();
  }
  // True once a deadline passed and closed the socket: a failed operation then means "timed out".
  bool expired() const { return st_->expired; }

 private:
  struct State {
    explicit State(Socket& s) : socket(&s), timer(s.get_executor()) {}
    Socket* socket;
    asio::steady_timer timer;
    Clock::time_point deadline = Clock::time_point::max();
    Clock::time_point armed = Clock::time_point::max();
    bool expired = false;
  };

  // The wait holds the state, not the owner: an owner destroyed meanwhile leaves it harmless.
  static void arm(const std::shared_ptr<State>& st) {
    st->armed = st->deadline;
    st->timer.expires_at(st->armed);
    st->timer.async_wait([st](const boost::system::error_code& ec) {
      if (ec == asio::error::operation_aborted || !st->socket) return;  // re-armed earlier, or gone
      st->armed = Clock::time_point::max();
      if (st->deadline == Clock::time_point::max()) return;
      if (Clock::now() < st->deadline) return arm(st);
      st->expired = true;
      boost::system::error_code ignored;
      st->socket->close(ignored);
    });
  }

  std::shared_ptr<State> st_;
};

using Deadline = BasicDeadline<asio::ip::tcp::socket>;

}  // namespace llmd
