#pragma once
// HTTP/1.1 server for the OpenAI-compatible API (and later the router and kvstore). Beast stays in
// http_server.cpp: this header only needs Asio's awaitable, so including it is cheap.
//
// Threading: each of `io_threads` threads runs its own io_context; a connection lives on one of
// them (dealt round-robin), and its handler runs on that thread. Handlers are coroutines; anything slow (the
// engine) runs on its own thread and hands results back through llmd::AsyncQueue, never by blocking the io
// threads.
#include "common/async_queue.hpp"
#include "common/http_headers.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace llmd::http {

struct ServerConfig {
  static constexpr const char* kDefaultHost = "127.0.0.1";  // loopback unless told otherwise
  static constexpr std::size_t kDefaultMaxBodyBytes = 32u << 20;
  static constexpr std::size_t kDefaultMaxHeaderBytes = 64u << 10;

  std::string host = kDefaultHost;
  std::uint16_t port = 0;  // 0: the OS picks a free port; Server::port() tells which
  int io_threads = 2;
  std::size_t max_body_bytes = kDefaultMaxBodyBytes;      // larger bodies get 413, unread
  std::size_t max_header_bytes = kDefaultMaxHeaderBytes;  // larger headers get 431
  // Waiting for the next request on a kept-alive connection.
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};
  // From a request's first byte to its last: a client that stalls mid-request is dropped.
  std::chrono::milliseconds read_timeout{std::chrono::seconds(30)};
  // One write (a whole response or one stream chunk): a client that stops reading is dropped.
  std::chrono::milliseconds write_timeout{std::chrono::seconds(30)};
  bool keep_alive = true;
  int backlog = 1024;
  // stop() waits this long for in-flight handlers to notice cancellation before tearing down.
  std::chrono::milliseconds stop_grace{std::chrono::seconds(5)};
};

struct Request {
  std::string method;  // as sent, e.g. "POST"
  std::string target;  // path + query as sent
  std::string path;    // target up to '?'
  std::string query;   // after '?', undecoded ("" if none)
  Headers headers;
  std::string body;
  std::string remote_address;
  std::uint16_t remote_port = 0;

  // The value of `name` in the query string, percent-decoded; nullopt if absent.
  std::optional<std::string> query_param(std::string_view name) const;
};

namespace detail {
class Connection;
}

// How a handler answers: either one send(), or start_stream() + write()* + finish(). Every call
// returns false when the client is gone (nothing more will reach it), never throws for that.
class Response {
 public:
  asio::awaitable<bool> send(int status, std::string_view content_type, std::string body,
                             FieldsRef extra_headers = {});
  // An OpenAI-style error: {"error":{"message","type","param","code"}}.
  asio::awaitable<bool> send_error(int status, std::string_view message, std::string_view type = {},
                                   std::string_view param = {});

  // Chunked transfer encoding; each write() is one chunk, flushed at once (TCP_NODELAY).
  // `first_chunk`, when given, goes out in the same write as the head; with `last` the stream ends
  // in that write too (a proxy relaying a response that arrived whole).
  asio::awaitable<bool> start_stream(int status, std::string_view content_type, FieldsRef extra_headers = {},
                                     std::string_view first_chunk = {}, bool last = false);
  asio::awaitable<bool> write(std::string_view chunk);
  // Ends the stream; `last_chunk`, when given, goes out in the same write as the end.
  asio::awaitable<bool> finish(std::string_view last_chunk = {});

  // True once the client disconnected (seen even while the handler is not writing) or the server is
  // stopping. Pass cancel_signal() to AsyncQueue::pop so a waiting handler wakes up at once.
  bool cancelled() const { return cancel_->fired(); }
  CancelSignal& cancel_signal() { return *cancel_; }

  bool headers_sent() const { return state_ != State::kNone; }
  bool finished() const { return state_ == State::kDone; }

 private:
  friend class detail::Connection;
  enum class State { kNone, kStreaming, kDone };
  Response(detail::Connection* conn, CancelSignal* cancel, bool keep_alive)
      : conn_(conn), cancel_(cancel), keep_alive_(keep_alive) {}
  // The status line, Content-Type, the extra fields and Connection, in the connection's buffer.
  std::string& begin_head(int status, std::string_view content_type, FieldsRef extra_headers);

  detail::Connection* conn_;
  CancelSignal* cancel_;
  bool keep_alive_;
  bool failed_ = false;  // a write failed: the connection must close
  State state_ = State::kNone;
};

using Handler = std::function<asio::awaitable<void>(Request&, Response&)>;

// The body text of an OpenAI-style error. `type` defaults from the status (e.g.
// "invalid_request_error", "not_found_error", "server_error"); an empty `param` is null; `code` is
// the status number, as vLLM sends it.
std::string json_error(int status, std::string_view message, std::string_view type = {},
                       std::string_view param = {});

class Server {
 public:
  // Binds and listens at once (so port() is known and a busy port throws llmd::Error here); serves
  // after start().
  explicit Server(ServerConfig config = {});
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Exact-path routes; register all before start(). Unknown path: 404; known path, other method: 405.
  void route(std::string method, std::string path, Handler handler);

  void start();
  // Stops accepting, cancels every connection (handlers see cancelled() and their pops wake), waits
  // up to stop_grace for handlers to return, then tears down. Idempotent; never hangs.
  void stop();
  // A graceful stop: stops accepting, lets the requests in progress finish (their connections then
  // close instead of being kept alive) for up to `grace`, then stop(). Any thread.
  void drain(std::chrono::milliseconds grace);

  std::uint16_t port() const;
  const ServerConfig& config() const;
  // The first thread's io_context, e.g. for co_spawning helpers next to the handlers.
  asio::io_context& io_context();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmd::http
