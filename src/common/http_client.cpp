// The HTTP/1.1 client: pooled connections, requests written by hand (common/http_wire), responses
// parsed in place (common/http_parser).
#include "common/http_client.hpp"

#include "common/deadline.hpp"
#include "common/error.hpp"
#include "common/http_parser.hpp"
#include "common/http_wire.hpp"
#include "common/read_buffer.hpp"
#include "common/write_now.hpp"

#include <fmt/format.h>

#include <array>

namespace llmd::http {

using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {
constexpr std::size_t kReadChunk = 16 << 10;  // a connection's buffer, and its de-chunked piece
constexpr std::size_t kMinRead = 4 << 10;     // the least free space a read is given
// What a deadline that passed turns an operation's error into.
const error_code kTimedOut = asio::error::timed_out;
}  // namespace

struct Client::Conn {
  Conn(asio::any_io_executor ex, PoolKey k) : key(std::move(k)), stream(std::move(ex)) {}
  // After each operation: no limit until the next one (a proxy's callback may take its time), and
  // the error is "timed out" when the deadline is what ended it.
  error_code op_done(error_code ec) {
    deadline.expires_never();
    return ec && deadline.expired() ? kTimedOut : ec;
  }

  PoolKey key;
  tcp::socket stream;
  Deadline deadline{stream};
  ReadBuffer buf{kReadChunk};
  std::string head;            // each request head on this connection is written here (no allocation)
  wire::ResponseHead head_in;  // each response head is parsed into this (its field list is reused)
  // A chunked body is de-chunked into this, once per connection: on the coroutine frame it would
  // make every exchange a 16 KiB allocation (and glibc consolidates its fast bins for each of those).
  std::unique_ptr<char[]> piece = std::make_unique<char[]>(kReadChunk);
  std::chrono::steady_clock::time_point idle_since;
};

namespace {

constexpr std::uint32_t kMaxResponseHeaderBytes = 64 << 10;

auto ec_token(error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

std::string describe(const error_code& ec) {
  return ec == kTimedOut ? std::string("timed out") : ec.message();
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
                       ec == kTimedOut);
  c->stream.set_option(tcp::no_delay(true), ec);  // small requests must not wait for Nagle
  c->stream.non_blocking(true, ec);               // for write_now(): never blocks the thread
  co_return c;
}

struct Outcome {
  error_code ec;
  const char* why = nullptr;  // a malformed response: what was wrong (ec is then protocol_error)
  bool got_header = false;    // the server answered: a retry could repeat a side effect
  bool reusable = false;
};

bool method_has_body(std::string_view m) {
  return m == "POST" || m == "PUT" || m == "PATCH";
}

// Reads more of the response into the connection's buffer; false (with ec) at EOF or an error.
// Not a coroutine of its own: one coroutine frame fewer per read.
asio::awaitable<std::size_t> read_some(Client::Conn& c, const ClientConfig& cfg, error_code& ec) {
  c.deadline.expires_after(cfg.io_timeout);
  return c.stream.async_read_some(c.buf.prepare(kMinRead), ec_token(ec));
}
bool commit_read(Client::Conn& c, std::size_t n, error_code& ec) {
  ec = c.op_done(ec);
  c.buf.commit(n);
  return !ec;
}

asio::awaitable<ClientResponse> exchange(Client::Conn& c, const std::string& host, std::uint16_t port,
                                         const std::string& method, const std::string& target,
                                         const std::string& body, FieldsRef headers, const ClientConfig& cfg,
                                         const ChunkCallback* on_chunk, Outcome& out) {
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
  headers.each([&h](std::string_view k, std::string_view v) { wire::append_field(h, k, v); });
  if (!body.empty() || method_has_body(method)) wire::append_field(h, "Content-Length", body.size());
  h += wire::kCrlf;
  const std::array<asio::const_buffer, 2> bufs{asio::buffer(h), asio::buffer(body)};
  const std::size_t sent = write_now(c.stream, bufs, out.ec);
  if (!out.ec && sent < asio::buffer_size(bufs)) {  // a large body: the rest as the server reads it
    c.deadline.expires_after(cfg.io_timeout);
    co_await asio::async_write(c.stream, drop_front(bufs, sent), wire::all_at_once, ec_token(out.ec));
    out.ec = c.op_done(out.ec);
  }
  if (out.ec) co_return resp;

  // The head; interim (1xx) responses are skipped.
  wire::ResponseHead& rh = c.head_in;
  const auto malformed = [&out](const char* why) {
    out.ec = make_error_code(boost::system::errc::protocol_error);
    out.why = why;
  };
  for (;;) {
    std::size_t scanned = 0, end;
    while ((end = wire::find_head_end(c.buf.data(), scanned)) == std::string_view::npos) {
      if (c.buf.size() > kMaxResponseHeaderBytes) {
        malformed("response headers too large");
        co_return resp;
      }
      if (!commit_read(c, co_await read_some(c, cfg, out.ec), out.ec)) co_return resp;
    }
    if (wire::parse_response_head(c.buf.data().substr(0, end), rh) == wire::Parse::kInvalid) {
      malformed(rh.error);
      co_return resp;
    }
    if (rh.status >= 200) break;
    c.buf.consume(rh.size);
  }
  wire::Framing framing;
  if (const char* bad = wire::response_framing(rh, method, framing)) {
    malformed(bad);
    co_return resp;
  }
  out.got_header = true;
  resp.status = rh.status;
  resp.headers.assign(rh.fields);
  c.buf.consume(rh.size);

  using Kind = wire::Framing::Kind;
  std::uint64_t left = framing.length;
  wire::ChunkedDecoder chunks;
  bool done = framing.kind == Kind::kNone;
  bool stopped = false;
  while (!done) {
    if (c.buf.size() == 0 && !commit_read(c, co_await read_some(c, cfg, out.ec), out.ec)) {
      if (framing.kind != Kind::kUntilClose || out.ec != asio::error::eof) {
        if (out.ec == asio::error::eof) malformed("the response ended before its body did");
        co_return resp;
      }
      out.ec = {};
      done = true;
      break;
    }
    // Everything already buffered is handed on at once: SSE events that arrived in one read leave
    // a proxy in one write, not one per event. Unchunked bytes are handed on from the buffer itself.
    std::string_view piece;
    std::size_t used = 0;
    if (framing.kind == Kind::kChunked) {
      std::string_view in = c.buf.data();
      std::size_t written = 0;
      const auto st = chunks.decode(in, c.piece.get(), kReadChunk, written);
      if (st == wire::ChunkedDecoder::Status::kInvalid) {
        malformed(chunks.error());
        co_return resp;
      }
      done = st == wire::ChunkedDecoder::Status::kDone;
      used = c.buf.size() - in.size();
      piece = {c.piece.get(), written};
    } else {
      used = framing.kind == Kind::kLength
                 ? static_cast<std::size_t>(std::min<std::uint64_t>(left, c.buf.size()))
                 : c.buf.size();
      piece = c.buf.data().substr(0, used);
      left -= framing.kind == Kind::kLength ? used : 0;
      done = framing.kind == Kind::kLength && left == 0;
    }
    resp.complete = done;
    if (piece.empty()) {
    } else if (on_chunk) {
      if (!co_await (*on_chunk)(resp, piece)) {
        stopped = true;
        break;
      }
    } else {
      if (resp.body.size() + piece.size() > cfg.max_body_bytes)
        fail("HTTP {} {}:{}{}: response body exceeds {} bytes", method, host, port, target,
             cfg.max_body_bytes);
      resp.body.append(piece);
    }
    c.buf.consume(used);
  }
  resp.complete = done;
  out.reusable = !stopped && done && framing.keep_alive;
  co_return resp;
}

[[noreturn]] void fail_exchange(const std::string& host, std::uint16_t port, const std::string& method,
                                const std::string& target, const Outcome& out) {
  if (out.why) fail("HTTP {} {}:{}{}: malformed response: {}", method, host, port, target, out.why);
  fail("HTTP {} {}:{}{}: {}", method, host, port, target, describe(out.ec));
}

}  // namespace

Client::Client(ClientConfig config) : config_(std::move(config)) {}

Client::~Client() = default;

// Plain functions handing on run()'s coroutine: a coroutine of their own would be a frame more.
asio::awaitable<ClientResponse> Client::request(const std::string& host, std::uint16_t port,
                                                const std::string& method, const std::string& target,
                                                const std::string& body, FieldsRef headers) {
  return run(host, port, method, target, body, headers, nullptr);
}

asio::awaitable<ClientResponse> Client::stream(const std::string& host, std::uint16_t port,
                                               const std::string& method, const std::string& target,
                                               const std::string& body, FieldsRef headers,
                                               const ChunkCallback& on_chunk) {
  return run(host, port, method, target, body, headers, &on_chunk);
}

asio::awaitable<ClientResponse> Client::run(const std::string& host, std::uint16_t port,
                                            const std::string& method, const std::string& target,
                                            const std::string& body, FieldsRef headers,
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
      if (reused && !out.got_header && !out.why && out.ec != kTimedOut) continue;
      fail_exchange(host, port, method, target, out);
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
  if (out.ec) fail_exchange(host, port, method, target, out);
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
