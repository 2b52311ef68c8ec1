#pragma once
// HTTP/1.1 client: the test suites, `llmd route` (proxying to model servers) and `llmd bench` use it.
// Beast stays in http_client.cpp. Network failures and timeouts throw llmd::Error; an HTTP error
// status is not a failure (it is in ClientResponse::status).
#include "common/asio.hpp"
#include "common/error.hpp"
#include "common/http_headers.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace llmd::http {

// No connection was made (the name did not resolve, the peer refused or did not answer in time):
// nothing reached the server, so a caller may safely try another one.
class ConnectError : public Error {
 public:
  ConnectError(const std::string& what, bool timed_out) : Error(what), timed_out_(timed_out) {}
  bool timed_out() const { return timed_out_; }

 private:
  bool timed_out_;
};

struct ClientConfig {
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};
  // The longest any one read or write may wait: a stalled server fails the request. For SSE this is
  // the longest gap between chunks (e.g. the prefill of a long prompt), so keep it generous.
  std::chrono::milliseconds io_timeout{std::chrono::seconds(120)};
  std::size_t max_body_bytes = std::size_t{1} << 30;  // of a buffered (non-streaming) response
  std::size_t max_idle_per_host = 16;                 // pooled keep-alive connections (Client only)
  // Pooled connections idle longer than this are dropped, not reused: servers close idle
  // connections (llmd's after 60 s) and a reuse racing that close would fail.
  std::chrono::milliseconds pool_idle_timeout{std::chrono::seconds(20)};
};

struct ClientResponse {
  int status = 0;
  Headers headers;
  std::string body;  // empty for streamed requests: the chunks went to the callback
  // The body has been read to its end; in a ChunkCallback: the piece it is handed is the last.
  bool complete = false;
};

// Called per received body piece, as it arrives (transfer chunks are not re-assembled: an SSE event
// may span two calls). `head` has status and headers. Return false to stop reading (the connection
// is then closed, not reused). A coroutine, so a proxy can co_await its own write in it.
using ChunkCallback =
    std::function<asio::awaitable<bool>(const ClientResponse& head, std::string_view chunk)>;

// Keep-alive connection reuse: a small pool of idle connections per host:port. Thread-safe; a
// connection is opened on the calling coroutine's executor and reused only from the same execution
// context, so one Client serves every thread of a server that runs an io_context per thread.
class Client {
 public:
  explicit Client(ClientConfig config = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // The arguments are references, not copies (a proxy would copy every body and header list):
  // they must outlive the operation, as they do when it is awaited in the same expression.
  asio::awaitable<ClientResponse> request(const std::string& host, std::uint16_t port,
                                          const std::string& method, const std::string& target,
                                          const std::string& body = {}, FieldsRef headers = {});
  asio::awaitable<ClientResponse> stream(const std::string& host, std::uint16_t port,
                                         const std::string& method, const std::string& target,
                                         const std::string& body, FieldsRef headers,
                                         const ChunkCallback& on_chunk);

  std::size_t idle_connections() const;

  struct Conn;
  // Idle connections are pooled per execution context (a connection's I/O runs on the context it
  // was opened on, so a coroutine on another thread of a multi-context server must not take it)
  // and per host and port.
  struct PoolKey {
    const void* context;
    std::string host;
    std::uint16_t port;
    auto operator<=>(const PoolKey&) const = default;
  };

 private:
  asio::awaitable<ClientResponse> run(const std::string& host, std::uint16_t port, const std::string& method,
                                      const std::string& target, const std::string& body, FieldsRef headers,
                                      const ChunkCallback* on_chunk);
  std::unique_ptr<Conn> take_idle(const PoolKey& key);
  void put_idle(std::unique_ptr<Conn> c);

  ClientConfig config_;
  mutable std::mutex mu_;
  std::map<PoolKey, std::vector<std::unique_ptr<Conn>>> idle_;
};

// One-shot requests on a fresh connection (closed afterwards), on the calling coroutine's executor.
asio::awaitable<ClientResponse> request(std::string host, std::uint16_t port, std::string method,
                                        std::string target, std::string body = {}, Headers headers = {},
                                        ClientConfig config = {});
asio::awaitable<ClientResponse> request_stream(std::string host, std::uint16_t port, std::string method,
                                               std::string target, std::string body, Headers headers,
                                               ChunkCallback on_chunk, ClientConfig config = {});

// Blocking wrappers (their own io_context) for tests and CLI tools. Never call from an io thread.
ClientResponse fetch(const std::string& host, std::uint16_t port, const std::string& method,
                     const std::string& target, const std::string& body = {}, const Headers& headers = {},
                     const ClientConfig& config = {});
// Streaming: `on_chunk` returns false to stop.
ClientResponse fetch_stream(const std::string& host, std::uint16_t port, const std::string& method,
                            const std::string& target, const std::string& body, const Headers& headers,
                            const std::function<bool(std::string_view chunk)>& on_chunk,
                            const ClientConfig& config = {});

}  // namespace llmd::http
