// The Beast half of the HTTP client (one translation unit: Beast is slow to compile).
#include "common/http_client.hpp"

#include "common/deadline.hpp"
#include "common/error.hpp"
#include "common/http_wire.hpp"

#include <fmt/format.h>

#include <array>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>

namespace llmd::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using beast::error_code;

namespace {
constexpr std::size_t kReadChunk = 16 << 10;
}  // namespace

struct Client::Conn {
  Conn(asio::any_io_executor ex, PoolKey k) : key(std::move(k)), stream(std::move(ex)) {
    // Beast reads as much as the buffer's free capacity: from an empty buffer, 512 bytes, which
    // split a 1 KiB response into three system calls (and a proxy's relay of it into two writes).
    buf.reserve(kReadChunk);
  }
  // After each operation: no limit until the next one (a proxy's callback may take its time), and
  // the error is "timed out" when the deadline is what ended it.
  error_code op_done(error_code ec) {
    deadline.expires_never();
    return ec && deadline.expired() ? beast::error::timeout : ec;
  }

  PoolKey key;
  tcp::socket stream;
  Deadline deadline{stream};
  beast::flat_buffer buf;
  std::string head;  // each request head on this connection is written here (no allocation)
  // Body pieces are parsed into this, once per connection: on the coroutine frame it would make
  // every exchange a 16 KiB allocation (and glibc consolidates its fast bins for each of those).
  std::unique_ptr<char[]> piece = std::make_unique<char[]>(kReadChunk);
  std::chrono::steady_clock::time_point idle_since;
};

namespace {

constexpr std::uint32_t kMaxResponseHeaderBytes = 64 << 10;

std::string str(beast::string_view s) {
  return {s.data(), s.size()};
}
auto ec_token(error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

std::string describe(const error_code& ec) {
  return ec == beast::error::timeout ? std::string("timed out") : ec.message();
}

asio::awaitable<std::unique_ptr<Client::Conn>> open_conn(asio::any_io_executor ex, Client::PoolKey key,
                                                         const ClientConfig& cfg) {
  const std::string& host = key.host;
  const std::uint16_t port = key.port;
  error_code ec;
  tcp::resolver resolver(ex);
  auto endpoints = co_await resolver.async_resolve(host, std::to_string(port), ec_token(ec));
  if (ec) throw ConnectError(fmt::format("HTTP: cannot resolve {}: {}", host, ec.message()), false);
  auto c = std::make_unique<Client::Conn>(ex, std::move(key));
  c->deadline.expires_after(cfg.connect_timeout);
  co_await asio::async_connect(c->stream, endpoints, ec_token(ec));
  ec = c->op_done(ec);
  if (ec)
    throw ConnectError(fmt::format("HTTP: cannot connect to {}:{}: {}", host, port, describe(ec)),
                       ec == beast::error::timeout);
  c->stream.set_option(tcp::no_delay(true), ec);  // small requests must not wait for Nagle
  co_return c;
}

struct Outcome {
  error_code ec;
  bool got_header = false;  // the server answered: a retry could repeat a side effect
  bool reusable = false;
};

bool method_has_body(std::string_view m) {
  return m == "POST" || m == "PUT" || m == "PATCH";
}

asio::awaitable<ClientResponse> exchange(Client::Conn& c, const std::string& host, std::uint16_t port,
                                         const std::string& method, const std::string& target,
                                         const std::string& body, const Headers& headers,
                                         const ClientConfig& cfg, const ChunkCallback* on_chunk,
                                         Outcome& out) {
  ClientResponse resp;
  std::string& h = c.head;
  h.clear();
  if (wire::breaks_line(method, false) || wire::breaks_line(target, false) ||
      method.find(' ') != std::string::npos || target.find(' ') != std::string::npos)
    fail("HTTP: method or target holds a space or line break");
  h.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
  if (!headers.contains("Host")) {
    const fmt::format_int digits(port);
    h.append("Host: ").append(host).append(":").append(digits.data(), digits.size()).append(wire::kCrlf);
  }
  for (const auto& [k, v] : headers) wire::append_field(h, k, v);
  if (!body.empty() || method_has_body(method)) wire::append_field(h, "Content-Length", body.size());
  h += wire::kCrlf;
  c.deadline.expires_after(cfg.io_timeout);
  const std::array<asio::const_buffer, 2> bufs{asio::buffer(h), asio::buffer(body)};
  co_await asio::async_write(c.stream, bufs, wire::all_at_once, ec_token(out.ec));
  out.ec = c.op_done(out.ec);
  if (out.ec) co_return resp;

  bhttp::response_parser<bhttp::buffer_body> p;
  p.header_limit(kMaxResponseHeaderBytes);
  // Enforced below for buffered bodies; streams are unbounded. Not boost::none: Boost 1.74 compares
  // Content-Length against an empty optional as "greater" and rejects every body.
  p.body_limit(std::numeric_limits<std::uint64_t>::max());
  if (method == "HEAD") p.skip(true);
  c.deadline.expires_after(cfg.io_timeout);
  co_await bhttp::async_read_header(c.stream, c.buf, p, ec_token(out.ec));
  out.ec = c.op_done(out.ec);
  if (out.ec) co_return resp;
  out.got_header = true;
  resp.status = p.get().result_int();
  resp.headers.reserve(static_cast<std::size_t>(std::distance(p.get().begin(), p.get().end())));
  for (const auto& f : p.get()) resp.headers.add(str(f.name_string()), str(f.value()));

  char* const piece = c.piece.get();
  bool stopped = false;
  while (!p.is_done()) {
    p.get().body().data = piece;
    p.get().body().size = kReadChunk;
    c.deadline.expires_after(cfg.io_timeout);
    // read_some, not read: it returns as soon as any body arrived, so each SSE event is seen at once.
    co_await bhttp::async_read_some(c.stream, c.buf, p, ec_token(out.ec));
    out.ec = c.op_done(out.ec);
    if (out.ec == bhttp::error::need_buffer) out.ec = {};
    if (out.ec) co_return resp;
    std::size_t n = kReadChunk - p.get().body().size;
    // Whatever else already sits in the buffer is parsed too, without I/O: SSE events that arrived
    // in one read are handed on in one piece (one write for a proxy, not one per event).
    while (!p.is_done() && c.buf.size() > 0 && n < kReadChunk) {
      p.get().body().data = piece + n;
      p.get().body().size = kReadChunk - n;
      error_code pe;
      const std::size_t used = p.put(c.buf.data(), pe);
      c.buf.consume(used);
      n = kReadChunk - p.get().body().size;
      if (pe == bhttp::error::need_buffer) pe = {};
      if (pe == bhttp::error::need_more || (used == 0 && !pe)) break;
      if (pe) {
        out.ec = pe;
        co_return resp;
      }
    }
    resp.complete = p.is_done();
    if (n == 0) continue;
    if (on_chunk) {
      if (!co_await (*on_chunk)(resp, std::string_view(piece, n))) {
        stopped = true;
        break;
      }
    } else {
      if (resp.body.size() + n > cfg.max_body_bytes)
        fail("HTTP {} {}:{}{}: response body exceeds {} bytes", method, host, port, target,
             cfg.max_body_bytes);
      resp.body.append(piece, n);
    }
  }
  resp.complete = p.is_done();
  out.reusable = !stopped && p.is_done() && p.get().keep_alive();
  co_return resp;
}

[[noreturn]] void fail_exchange(const std::string& host, std::uint16_t port, const std::string& method,
                                const std::string& target, const error_code& ec) {
  fail("HTTP {} {}:{}{}: {}", method, host, port, target, describe(ec));
}

}  // namespace

Client::Client(ClientConfig config) : config_(std::move(config)) {}

Client::~Client() = default;

asio::awaitable<ClientResponse> Client::request(const std::string& host, std::uint16_t port,
                                                const std::string& method, const std::string& target,
                                                const std::string& body, const Headers& headers) {
  co_return co_await run(host, port, method, target, body, headers, nullptr);
}

asio::awaitable<ClientResponse> Client::stream(const std::string& host, std::uint16_t port,
                                               const std::string& method, const std::string& target,
                                               const std::string& body, const Headers& headers,
                                               const ChunkCallback& on_chunk) {
  co_return co_await run(host, port, method, target, body, headers, &on_chunk);
}

asio::awaitable<ClientResponse> Client::run(const std::string& host, std::uint16_t port,
                                            const std::string& method, const std::string& target,
                                            const std::string& body, const Headers& headers,
                                            const ChunkCallback* on_chunk) {
  const auto ex = co_await asio::this_coro::executor;
  PoolKey key{&asio::query(ex, asio::execution::context), host, port};
  for (int attempt = 0;; ++attempt) {
    auto c = attempt == 0 ? take_idle(key) : nullptr;
    const bool reused = c != nullptr;
    if (!c) c = co_await open_conn(ex, key, config_);
    Outcome out;
    auto resp = co_await exchange(*c, host, port, method, target, body, headers, config_, on_chunk, out);
    if (out.ec) {
      // A pooled connection the server closed meanwhile fails before any answer: the request never
      // ran, so one retry on a fresh connection is safe.
      if (reused && !out.got_header && out.ec != beast::error::timeout) continue;
      fail_exchange(host, port, method, target, out.ec);
    }
    if (out.reusable) put_idle(std::move(c));
    co_return resp;
  }
}

std::unique_ptr<Client::Conn> Client::take_idle(const PoolKey& key) {
  std::lock_guard lk(mu_);
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& v = it->second;
  const auto now = std::chrono::steady_clock::now();
  while (!v.empty()) {
    auto c = std::move(v.back());
    v.pop_back();
    if (now - c->idle_since < config_.pool_idle_timeout) return c;
  }
  return nullptr;
}

void Client::put_idle(std::unique_ptr<Conn> c) {
  c->deadline.disarm();
  c->idle_since = std::chrono::steady_clock::now();
  std::lock_guard lk(mu_);
  auto& v = idle_[c->key];
  if (v.size() < config_.max_idle_per_host) v.push_back(std::move(c));
}

std::size_t Client::idle_connections() const {
  std::lock_guard lk(mu_);
  std::size_t n = 0;
  for (const auto& [k, v] : idle_) n += v.size();
  return n;
}

asio::awaitable<ClientResponse> request(std::string host, std::uint16_t port, std::string method,
                                        std::string target, std::string body, Headers headers,
                                        ClientConfig config) {
  co_return co_await request_stream(std::move(host), port, std::move(method), std::move(target),
                                    std::move(body), std::move(headers), nullptr, std::move(config));
}

asio::awaitable<ClientResponse> request_stream(std::string host, std::uint16_t port, std::string method,
                                               std::string target, std::string body, Headers headers,
                                               ChunkCallback on_chunk, ClientConfig config) {
  auto ex = co_await asio::this_coro::executor;
  Client::PoolKey key{nullptr, host, port};  // not a braced temporary in co_await: g++ 12 frees it twice
  auto c = co_await open_conn(ex, std::move(key), config);
  Outcome out;
  auto resp = co_await exchange(*c, host, port, method, target, body, headers, config,
                                on_chunk ? &on_chunk : nullptr, out);
  if (out.ec) fail_exchange(host, port, method, target, out.ec);
  co_return resp;
}

namespace {
ClientResponse run_blocking(asio::awaitable<ClientResponse> op, asio::io_context& ioc) {
  ClientResponse result;
  std::exception_ptr error;
  asio::co_spawn(ioc, std::move(op), [&](std::exception_ptr e, ClientResponse r) {
    error = e;
    result = std::move(r);
  });
  ioc.run();
  if (error) std::rethrow_exception(error);
  return result;
}
}  // namespace

ClientResponse fetch(const std::string& host, std::uint16_t port, const std::string& method,
                     const std::string& target, const std::string& body, const Headers& headers,
                     const ClientConfig& config) {
  asio::io_context ioc;
  return run_blocking(request(host, port, method, target, body, headers, config), ioc);
}

ClientResponse fetch_stream(const std::string& host, std::uint16_t port, const std::string& method,
                            const std::string& target, const std::string& body, const Headers& headers,
                            const std::function<bool(std::string_view chunk)>& on_chunk,
                            const ClientConfig& config) {
  asio::io_context ioc;
  ChunkCallback cb = [&on_chunk](const ClientResponse&, std::string_view chunk) -> asio::awaitable<bool> {
    co_return on_chunk(chunk);
  };
  return run_blocking(request_stream(host, port, method, target, body, headers, std::move(cb), config), ioc);
}

}  // namespace llmd::http
