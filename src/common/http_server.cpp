// The HTTP/1.1 server: connections, request parsing (common/http_parser), responses.
#include "common/http_server.hpp"

#include "common/deadline.hpp"
#include "common/error.hpp"
#include "common/http_parser.hpp"
#include "common/http_wire.hpp"
#include "common/read_buffer.hpp"
#include "common/write_now.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace llmd::http {

using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr std::size_t kReadChunk = 16 << 10;  // a connection's buffer, and the linger's scratch
constexpr std::size_t kMinRead = 4 << 10;     // the least free space a read is given
// After an error response, how long (and how much) we keep reading what the client still sends so
// the kernel does not answer it with a RST that would destroy our response before it is read.
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr std::size_t kLingerBytes = 1 << 20;

std::string_view default_error_type(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

auto ec_token(error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += char(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::string json_error(int status, std::string_view message, std::string_view type, std::string_view param) {
  nlohmann::json err = {
      {"message", message},
      {"type", type.empty() ? default_error_type(status) : type},
      {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
      {"code", status},
  };
  return nlohmann::json{{"error", std::move(err)}}.dump();
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    auto amp = q.find('&');
    auto pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    auto eq = pair.find('=');
    if (percent_decode(pair.substr(0, eq)) != name) continue;
    return eq == std::string_view::npos ? std::string{} : percent_decode(pair.substr(eq + 1));
  }
  return std::nullopt;
}

struct Server::Impl {
  explicit Impl(ServerConfig c)
      : cfg(std::move(c)), iocs(make_contexts(cfg.io_threads)), acceptor(*iocs[0]) {}

  // One io_context per thread, each run by that thread alone (as nginx and HAProxy do): a
  // connection never needs a strand, and the executor it carries fits in any_io_executor's small
  // buffer. A strand executor does not, which cost dozens of allocations per proxied request.
  // Every socket of a context is used by its thread only (other threads post to it), so the
  // reactor's per-socket locks are off: seven lock/unlock pairs fewer per proxied request.
  static std::vector<std::unique_ptr<asio::io_context>> make_contexts(int threads) {
    std::vector<std::unique_ptr<asio::io_context>> v;
    for (int i = 0; i < std::max(1, threads); ++i)
      v.push_back(std::make_unique<asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO));
    return v;
  }

  asio::awaitable<void> accept_loop();
  void connection_done(std::uint64_t id);

  // Declaration order is destruction order reversed: the routes (whose lambdas coroutine frames
  // may point into) and the registry outlive the io_context, which outlives the acceptor.
  ServerConfig cfg;
  std::map<std::string, std::vector<std::pair<std::string, Handler>>> routes;
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::uint64_t, std::weak_ptr<detail::Connection>> conns;
  std::uint64_t next_id = 0;
  int live = 0;  // running connection coroutines + the accept loop
  bool started = false;
  bool stopped = false;
  std::atomic<bool> stopping{false};
  std::atomic<bool> draining{false};  // drain(): no new connections, none kept alive
  std::uint16_t bound_port = 0;
  std::vector<std::unique_ptr<asio::io_context>> iocs;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work;  // run() until stop()
  std::size_t next_ioc = 0;  // connections are dealt out round-robin
  tcp::acceptor acceptor;
  std::vector<std::thread> threads;
};

namespace detail {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server::Impl& srv, tcp::socket sock) : srv_(srv), stream_(std::move(sock)) {
    error_code ec;
    stream_.non_blocking(true, ec);  // write_now() and watch()'s read: never block a thread
    auto ep = stream_.remote_endpoint(ec);
    if (!ec) {
      remote_address_ = ep.address().to_string();
      remote_port_ = ep.port();
    }
  }

  asio::awaitable<void> run();
  auto executor() { return stream_.get_executor(); }

  // From any thread: abort whatever the connection is doing.
  void shutdown() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->cancel_.fire();
      error_code ec;
      self->stream_.close(ec);
    });
  }

  // Used by Response; all on the connection's thread.
  // Response's writes, in two steps so that the usual one costs no coroutine frame:
  //   if (std::size_t sent; !conn_->write_at_once(b, sent, ok)) ok = co_await conn_->write_rest(b, sent);
  // write_at_once() hands `b` to the kernel now; true when that finished the write (`ok`: whether it
  // went), false when a full socket buffer left all but `sent` bytes for write_rest().
  template <std::size_t N>
  bool write_at_once(const std::array<asio::const_buffer, N>& b, std::size_t& sent, bool& went) {
    error_code ec;
    sent = write_now(stream_, b, ec);
    if (!ec && sent < asio::buffer_size(b)) return false;
    went = ok(ec);
    return true;
  }
  template <std::size_t N>
  asio::awaitable<bool> write_rest(const std::array<asio::const_buffer, N>& b, std::size_t sent) {
    error_code ec;
    expires_after(srv_.cfg.write_timeout);  // waiting for room, in time
    co_await asio::async_write(stream_, drop_front(b, sent), wire::all_at_once, ec_token(ec));
    expires_never();  // between writes a handler may wait on the engine as long as it likes
    co_return ok(ec);
  }

 private:
  bool ok(const error_code& ec) {
    if (!ec) return true;
    cancel_.fire();  // a failed write means the client is gone (or too slow): same thing
    return false;
  }

  // Reads whatever the kernel has into buf_'s free space; the caller commits what it got. Not a
  // coroutine of its own: one coroutine frame fewer per read.
  asio::awaitable<std::size_t> read_some(error_code& ec) {
    return stream_.async_read_some(buf_.prepare(kMinRead), ec_token(ec));
  }
  bool commit_read(std::size_t n, const error_code& ec) {
    buf_.commit(n);
    return !ec;
  }
  // Reads the next request into req_: 0 when it is whole, else the status to refuse it with (or -1:
  // the connection failed, nobody to answer); `why` says what was wrong.
  asio::awaitable<int> read_request(wire::Framing& framing, std::string& why);
  asio::awaitable<int> read_body(const wire::Framing& framing, bool expect_continue, std::string& why);
  asio::awaitable<void> reject(int status, const std::string& message);
  asio::awaitable<bool> serve(bool keep_alive);
  void watch(std::uint64_t generation);
  void stop_watch();
  asio::awaitable<void> linger();

  friend class http::Response;
  std::string head_;  // every response head on this connection is written here (no allocation)

  void expires_after(std::chrono::milliseconds d) { deadline_.expires_after(d); }
  void expires_never() { deadline_.expires_never(); }

  Server::Impl& srv_;
  tcp::socket stream_;
  Deadline deadline_{stream_};
  ReadBuffer buf_{kReadChunk};
  // Kept from request to request: the parse's field list and the request's strings keep their
  // capacity, so a kept-alive connection allocates nothing for the usual request.
  wire::RequestHead head_in_;
  Request req_;
  CancelSignal cancel_;
  std::string remote_address_;
  std::uint16_t remote_port_ = 0;
  std::uint64_t watch_generation_ = 0;  // bumped when a watch ends: a late wake-up of an old one is ignored
  bool watching_ = false;

 public:
  // Between a request's head and its response's end; drain() reads it from another thread. One flag
  // per connection, not a counter shared by every io thread: nothing contended per request.
  std::atomic<bool> in_request_{false};
};

asio::awaitable<void> Connection::run() {
  auto self = shared_from_this();
  const auto& cfg = srv_.cfg;
  error_code ec;
  while (!srv_.stopping && !cancel_.fired()) {
    if (buf_.size() == 0) {  // idle between requests: the idle timeout applies
      expires_after(cfg.idle_timeout);
      if (!commit_read(co_await read_some(ec), ec)) break;
    }
    // From here the whole request must arrive within read_timeout: a stalled client costs nothing.
    expires_after(cfg.read_timeout);
    wire::Framing framing;
    std::string why;
    const int refuse = co_await read_request(framing, why);
    if (refuse != 0) {
      if (refuse > 0) co_await reject(refuse, why);
      break;
    }
    expires_never();  // the handler's own time is not limited; its writes are
    in_request_.store(true, std::memory_order_relaxed);
    const bool more =
        co_await serve(cfg.keep_alive && framing.keep_alive && !srv_.stopping && !srv_.draining);
    in_request_.store(false, std::memory_order_relaxed);
    if (!more) break;
  }
  stream_.shutdown(tcp::socket::shutdown_both, ec);
  stream_.close(ec);
}

asio::awaitable<int> Connection::read_request(wire::Framing& framing, std::string& why) {
  const auto& cfg = srv_.cfg;
  error_code ec;
  std::size_t scanned = 0, end;
  while ((end = wire::find_head_end(buf_.data(), scanned)) == std::string_view::npos) {
    if (buf_.size() > cfg.max_header_bytes) break;
    if (!commit_read(co_await read_some(ec), ec)) co_return -1;  // timeout, reset, EOF: nobody to answer
  }
  if (end == std::string_view::npos || end > cfg.max_header_bytes) {
    why = fmt::format("Request headers exceed the limit of {} bytes", cfg.max_header_bytes);
    co_return 431;
  }
  wire::RequestHead& h = head_in_;
  const char* bad = nullptr;
  if (wire::parse_request_head(buf_.data().substr(0, end), h) == wire::Parse::kInvalid) bad = h.error;
  if (!bad) bad = wire::request_framing(h, framing);
  if (bad) {
    why = fmt::format("Malformed HTTP request: {}", bad);
    co_return 400;
  }
  // Copied out before the body is read: a read may move the buffer the views point into.
  Request& req = req_;
  req.method.assign(h.method);
  req.target.assign(h.target);
  const std::size_t q = h.target.find('?');
  req.path.assign(h.target.substr(0, q));
  req.query.assign(q == std::string_view::npos ? std::string_view{} : h.target.substr(q + 1));
  req.headers.assign(h.fields);
  req.remote_address = remote_address_;
  req.remote_port = remote_port_;
  const auto* expect = wire::find_field(h.fields, "expect");
  const bool expect_continue = expect && iequals(*expect, "100-continue");
  buf_.consume(h.size);
  // Nearly every request's body came in with its head: taken here, without read_body()'s frame.
  using Kind = wire::Framing::Kind;
  if (framing.kind == Kind::kNone || (framing.kind == Kind::kLength && framing.length <= buf_.size() &&
                                      framing.length <= cfg.max_body_bytes)) {
    const auto length = static_cast<std::size_t>(framing.length);
    req.body.assign(buf_.data().substr(0, length));
    buf_.consume(length);
    co_return 0;
  }
  co_return co_await read_body(framing, expect_continue, why);
}

asio::awaitable<int> Connection::read_body(const wire::Framing& framing, bool expect_continue,
                                           std::string& why) {
  using Kind = wire::Framing::Kind;
  const std::size_t limit = srv_.cfg.max_body_bytes;
  std::string& body = req_.body;
  body.clear();
  const auto too_large = [&] {
    why = fmt::format("Request body exceeds the limit of {} bytes", limit);
    return 413;
  };
  if (framing.kind == Kind::kNone) co_return 0;
  // Checked before a byte of the body is read (or a 100 Continue invites it).
  if (framing.kind == Kind::kLength && framing.length > limit) co_return too_large();
  error_code ec;
  if (expect_continue && buf_.size() == 0) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    co_await asio::async_write(stream_, asio::buffer(kContinue), ec_token(ec));
    if (ec) co_return -1;
  }
  if (framing.kind == Kind::kLength) {
    const auto length = static_cast<std::size_t>(framing.length);
    const std::size_t have = std::min(length, buf_.size());
    body.assign(buf_.data().substr(0, have));
    buf_.consume(have);
    if (have < length) {  // the rest straight into the body, not through the buffer
      body.resize(length);
      co_await asio::async_read(stream_, asio::buffer(body.data() + have, length - have), ec_token(ec));
      if (ec) co_return -1;
    }
    co_return 0;
  }
  wire::ChunkedDecoder chunks;
  for (;;) {
    std::string_view in = buf_.data();
    const std::size_t before = in.size();
    std::size_t written = body.size();
    body.resize(std::min(limit + 1, written + before));
    const auto status = chunks.decode(in, body.data(), body.size(), written);
    body.resize(written);
    buf_.consume(before - in.size());
    if (status == wire::ChunkedDecoder::Status::kInvalid) {
      why = fmt::format("Malformed HTTP request: {}", chunks.error());
      co_return 400;
    }
    if (status == wire::ChunkedDecoder::Status::kDone) co_return 0;
    if (body.size() > limit) co_return too_large();
    if (!commit_read(co_await read_some(ec), ec)) co_return -1;
  }
}

asio::awaitable<void> Connection::reject(int status, const std::string& message) {
  Response res(this, &cancel_, false);
  if (co_await res.send_error(status, message)) co_await linger();
}

asio::awaitable<void> Connection::linger() {
  error_code ec;
  stream_.shutdown(tcp::socket::shutdown_send, ec);
  expires_after(kLingerTime);
  std::size_t drained = 0;
  char scratch[kReadChunk];
  while (!ec && drained < kLingerBytes) {
    drained += co_await stream_.async_read_some(asio::buffer(scratch), ec_token(ec));
  }
}

asio::awaitable<bool> Connection::serve(bool keep) {
  Request& req = req_;
  Response res(this, &cancel_, keep);

  auto route = srv_.routes.find(req.path);
  Handler* handler = nullptr;
  if (route != srv_.routes.end())
    for (auto& [method, h] : route->second)
      if (method == req.method) handler = &h;
  if (route == srv_.routes.end()) {
    co_await res.send_error(404, fmt::format("Not found: {}", req.path), "not_found_error");
  } else if (!handler) {
    std::string allow;
    for (const auto& [method, h] : route->second) allow += allow.empty() ? method : ", " + method;
    Headers extra;  // built outside co_await: g++ 12 miscompiles braced temporaries in coroutines
    extra.add("Allow", allow);
    co_await res.send(405, "application/json",
                      json_error(405, fmt::format("Method {} not allowed for {}", req.method, req.path)),
                      extra);
  } else {
    // While the handler runs we watch the socket so a disconnect is seen at once (the handler may be
    // waiting for the engine, not writing). Bytes read are kept in buf_ for the next request. (Here,
    // not in a coroutine of its own: a coroutine frame fewer per request.)
    std::string error;
    watching_ = true;
    watch(watch_generation_);
    try {
      co_await (*handler)(req, res);
    } catch (const std::exception& e) {
      error = fmt::format("Internal error: {}", e.what());
    } catch (...) {
      error = "Internal error";
    }
    stop_watch();
    if (!res.headers_sent()) {
      // Not a ?: inside the co_await: g++ 12 destroys such a temporary twice.
      if (error.empty()) error = "The handler sent no response";
      co_await res.send_error(500, error, "server_error");
    } else if (!res.finished()) {
      if (error.empty()) {
        co_await res.finish();
      } else {
        res.failed_ = true;  // a stream cut short must not look complete: close without the last chunk
      }
    }
  }
  co_return keep && !res.failed_ && !cancel_.fired();
}

// A readiness wait, not a pending read: it costs no system call and no coroutine until the client
// sends something, which for almost every request is never (this runs once per request).
void Connection::watch(std::uint64_t generation) {
  stream_.async_wait(tcp::socket::wait_read, [self = shared_from_this(), generation](error_code ec) {
    if (generation != self->watch_generation_ || ec == asio::error::operation_aborted) return;
    if (!ec) {
      // Pipelined bytes beyond a header's worth wait in the kernel: we only need to see EOF/reset.
      if (self->buf_.size() >= self->srv_.cfg.max_header_bytes) return;
      const std::size_t n = self->stream_.read_some(self->buf_.prepare(kMinRead), ec);
      self->buf_.commit(n);
      if (!ec || ec == asio::error::would_block) return self->watch(generation);
    }
    self->watching_ = false;
    self->cancel_.fire();
  });
}

void Connection::stop_watch() {
  ++watch_generation_;
  if (!watching_) return;
  watching_ = false;
  error_code ec;
  stream_.cancel(ec);  // nothing else is pending on the socket between handler and next read
}

}  // namespace detail

// ---- Response ----

std::string& Response::begin_head(int status, std::string_view content_type, FieldsRef extra_headers) {
  std::string& h = conn_->head_;
  h.clear();
  const std::string_view reason = wire::reason_phrase(status);
  const fmt::format_int code(status);
  h += "HTTP/1.1 ";
  h.append(code.data(), code.size());
  h += ' ';
  h.append(reason.data(), reason.size());
  h += wire::kCrlf;
  wire::append_field(h, "Content-Type", content_type);
  extra_headers.each([&h](std::string_view k, std::string_view v) { wire::append_field(h, k, v); });
  if (!keep_alive_) h += "Connection: close\r\n";
  return h;
}

asio::awaitable<bool> Response::send(int status, std::string_view content_type, std::string body,
                                     FieldsRef extra_headers) {
  if (state_ != State::kNone) fail("HTTP response already started");
  std::string& h = begin_head(status, content_type, extra_headers);  // may throw: nothing sent yet
  state_ = State::kDone;
  if (cancel_->fired()) {
    failed_ = true;
    co_return false;
  }
  if (status >= 200 && status != 204 && status != 304)  // RFC 9110 8.6: those carry no length
    wire::append_field(h, "Content-Length", body.size());
  h += wire::kCrlf;
  const std::array<asio::const_buffer, 2> bufs{asio::buffer(h), asio::buffer(body)};
  bool ok;
  if (std::size_t sent; !conn_->write_at_once(bufs, sent, ok)) ok = co_await conn_->write_rest(bufs, sent);
  failed_ |= !ok;
  co_return ok;
}

asio::awaitable<bool> Response::send_error(int status, std::string_view message, std::string_view type,
                                           std::string_view param) {
  co_return co_await send(status, "application/json", json_error(status, message, type, param));
}

asio::awaitable<bool> Response::start_stream(int status, std::string_view content_type,
                                             FieldsRef extra_headers, std::string_view first_chunk,
                                             bool last) {
  if (state_ != State::kNone) fail("HTTP response already started");
  std::string& h = begin_head(status, content_type, extra_headers);  // may throw: nothing sent yet
  state_ = last ? State::kDone : State::kStreaming;
  if (cancel_->fired()) {
    failed_ = true;
    co_return false;
  }
  h += "Transfer-Encoding: chunked\r\n\r\n";
  // The head, the first chunk and (with `last`) the end in one write: a proxy relaying a stream
  // saves a system call (and a packet) per response.
  if (!first_chunk.empty()) h += wire::ChunkHead(first_chunk.size()).view();
  const std::string_view tail = first_chunk.empty() ? std::string_view{} : wire::kCrlf;
  const std::string_view end = last ? wire::kLastChunk : std::string_view{};
  const std::array<asio::const_buffer, 4> bufs{asio::buffer(h), asio::buffer(first_chunk), asio::buffer(tail),
                                               asio::buffer(end)};
  bool ok;
  if (std::size_t sent; !conn_->write_at_once(bufs, sent, ok)) ok = co_await conn_->write_rest(bufs, sent);
  failed_ |= !ok;
  co_return ok;
}

asio::awaitable<bool> Response::write(std::string_view chunk) {
  if (state_ != State::kStreaming) fail("HTTP write() outside a stream");
  if (failed_ || cancel_->fired()) {
    failed_ = true;
    co_return false;
  }
  if (chunk.empty()) co_return true;  // an empty chunk would end the stream
  const wire::ChunkHead head(chunk.size());
  const std::array<asio::const_buffer, 3> bufs{asio::buffer(head.view()), asio::buffer(chunk),
                                               asio::buffer(wire::kCrlf)};
  bool ok;
  if (std::size_t sent; !conn_->write_at_once(bufs, sent, ok)) ok = co_await conn_->write_rest(bufs, sent);
  failed_ |= !ok;
  co_return ok;
}

asio::awaitable<bool> Response::finish(std::string_view last_chunk) {
  if (state_ != State::kStreaming) fail("HTTP finish() outside a stream");
  state_ = State::kDone;
  if (failed_ || cancel_->fired()) {
    failed_ = true;
    co_return false;
  }
  const wire::ChunkHead head(last_chunk.size());
  const bool data = !last_chunk.empty();
  const std::array<asio::const_buffer, 4> bufs{
      asio::buffer(head.view().substr(0, data ? head.len : 0)), asio::buffer(last_chunk),
      asio::buffer(data ? wire::kCrlf : std::string_view{}), asio::buffer(wire::kLastChunk)};
  bool ok;
  if (std::size_t sent; !conn_->write_at_once(bufs, sent, ok)) ok = co_await conn_->write_rest(bufs, sent);
  failed_ |= !ok;
  co_return ok;
}

// ---- Server ----

asio::awaitable<void> Server::Impl::accept_loop() {
  asio::steady_timer backoff(acceptor.get_executor());
  for (;;) {
    error_code ec;
    asio::io_context& ctx = *iocs[next_ioc++ % iocs.size()];
    tcp::socket sock = co_await acceptor.async_accept(ctx, ec_token(ec));
    if (stopping || ec == asio::error::operation_aborted || !acceptor.is_open()) break;
    if (ec) {  // e.g. out of fds: back off instead of spinning; existing connections will free some
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(ec_token(ec));
      continue;
    }
    sock.set_option(tcp::no_delay(true), ec);  // stream chunks must leave at once
    auto conn = std::make_shared<detail::Connection>(*this, std::move(sock));
    std::uint64_t id;
    {
      std::lock_guard lk(mu);
      id = next_id++;
      conns.emplace(id, conn);
      ++live;
    }
    asio::co_spawn(conn->executor(), conn->run(),
                   [this, id, conn](std::exception_ptr) { connection_done(id); });
  }
}

void Server::Impl::connection_done(std::uint64_t id) {
  std::lock_guard lk(mu);
  conns.erase(id);
  --live;
  cv.notify_all();
}

Server::Server(ServerConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {
  auto& a = impl_->acceptor;
  error_code ec;
  auto addr = asio::ip::make_address(impl_->cfg.host, ec);
  if (ec) fail("HTTP server: bad listen address '{}': {}", impl_->cfg.host, ec.message());
  tcp::endpoint ep(addr, impl_->cfg.port);
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(impl_->cfg.backlog, ec);
  if (ec) fail("HTTP server: cannot listen on {}:{}: {}", impl_->cfg.host, impl_->cfg.port, ec.message());
  impl_->bound_port = a.local_endpoint().port();
}

Server::~Server() {
  stop();
}

void Server::route(std::string method, std::string path, Handler handler) {
  if (impl_->started) fail("HTTP server: route {} {} added after start()", method, path);
  impl_->routes[std::move(path)].emplace_back(std::move(method), std::move(handler));
}

void Server::start() {
  auto& s = *impl_;
  if (s.started) fail("HTTP server: start() called twice");
  s.started = true;
  {
    std::lock_guard lk(s.mu);
    ++s.live;
  }
  asio::co_spawn(s.acceptor.get_executor(), s.accept_loop(), [&s](std::exception_ptr) {
    std::lock_guard lk(s.mu);
    --s.live;
    s.cv.notify_all();
  });
  for (auto& ioc : s.iocs) {
    s.work.push_back(asio::make_work_guard(*ioc));
    s.threads.emplace_back([&ioc = *ioc] {
      for (;;) {
        try {
          ioc.run();
          return;
        } catch (const std::exception& e) {  // a bug in a completion handler: keep serving
          fmt::print(stderr, "llmd http: io thread caught: {}\n", e.what());
        }
      }
    });
  }
}

void Server::stop() {
  auto& s = *impl_;
  {
    std::lock_guard lk(s.mu);
    if (s.stopped) return;
    s.stopped = true;
  }
  s.stopping = true;
  if (!s.started) {
    error_code ec;
    s.acceptor.close(ec);
    return;
  }
  asio::post(s.acceptor.get_executor(), [&s] {
    error_code ec;
    s.acceptor.close(ec);
  });
  std::vector<std::shared_ptr<detail::Connection>> live;
  {
    std::lock_guard lk(s.mu);
    for (auto& [id, w] : s.conns)
      if (auto c = w.lock()) live.push_back(std::move(c));
  }
  for (auto& c : live) c->shutdown();
  live.clear();
  {
    std::unique_lock lk(s.mu);
    s.cv.wait_for(lk, s.cfg.stop_grace, [&] { return s.live == 0; });
  }
  // Whatever still runs (a handler ignoring cancellation) is destroyed with the io_contexts.
  s.work.clear();
  for (auto& ioc : s.iocs) ioc->stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
}

void Server::drain(std::chrono::milliseconds grace) {
  auto& s = *impl_;
  if (s.started && !s.stopping) {
    s.draining = true;
    asio::post(s.acceptor.get_executor(), [&s] {
      error_code ec;
      s.acceptor.close(ec);
    });
    // Polled: this runs once, at shutdown, and a request's end needs no wake-up of its own.
    const auto busy = [&s] {
      std::lock_guard lk(s.mu);
      for (auto& [id, w] : s.conns)
        if (auto c = w.lock(); c && c->in_request_.load(std::memory_order_relaxed)) return true;
      return false;
    };
    const auto until = std::chrono::steady_clock::now() + grace;
    while (busy() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop();
}

std::uint16_t Server::port() const {
  return impl_->bound_port;
}
const ServerConfig& Server::config() const {
  return impl_->cfg;
}
asio::io_context& Server::io_context() {
  return *impl_->iocs[0];
}

}  // namespace llmd::http
