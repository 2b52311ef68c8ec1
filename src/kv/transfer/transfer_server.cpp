#include "kv/transfer/transfer_server.hpp"

#include <array>
#include <cstring>
#include <map>
#include <unordered_set>
#include <vector>

#include "common/deadline.hpp"
#include "common/error.hpp"
#include "kv/transfer/auth.hpp"
#include "kv/transfer/shm_backend.hpp"
#include "kv/transfer/socket_io.hpp"
#include "kv/transfer/ucx_worker.hpp"
#include "kv/transfer/wire.hpp"

namespace llmd::kv::transfer {
struct ServerState {
  ServerState(asio::any_io_executor e, TransferConfig c, KvRegion r, std::string fp, PinRegistry& p,
              TransferServer::ReleaseFn rel, std::string id)
      : ex(std::move(e)),
        cfg(std::move(c)),
        region(r),
        fingerprint(std::move(fp)),
        engine_id(id.empty() ? new_engine_id() : std::move(id)),
        boot_id(read_boot_id()),
        pins(p),
        on_release(std::move(rel)),
        auth(cfg.secret),
        acceptor(ex),
        unix_acceptor(ex) {}

  asio::any_io_executor ex;
  TransferConfig cfg;
  KvRegion region;
  std::string fingerprint;
  std::string engine_id;
  wire::BootId boot_id;
  PinRegistry& pins;
  TransferServer::ReleaseFn on_release;
  Authenticator auth;
  tcp::acceptor acceptor;
  std::unordered_set<tcp::socket*> live;  // executor only
  // shm (offer_shm): the Unix listener and the read-only memfd each authenticated peer receives.
  std::string shm_name;
  UniqueFd shm_fd;
  unix_stream::acceptor unix_acceptor;
  std::unordered_set<unix_stream::socket*> live_unix;  // executor only
  // ucx (offer_ucx): the worker peers read through and the region registered with it (released first).
  std::unique_ptr<UcxWorker> ucx;
  std::unique_ptr<UcxRegistration> ucx_region;
  bool stopped = false;  // executor only
};

namespace {

using State = ServerState;

// The leases one connection holds (LEASE ... DONE), with the buffers of the frames that serve them.
struct Leases {
  struct Held {
    PinRegistry::Lease lease;
    std::chrono::steady_clock::time_point until;
  };
  std::map<uint64_t, Held> held;  // by xfer id
  wire::Lease lease;
  std::vector<BlockHash> keys;
  wire::LeaseOk lease_ok;
  wire::Bytes frame;

  // The connection's limit while leases are held: the first lease's end (io_timeout after its
  // LEASE). Closing the connection then ends every lease on it; the readers get no DONE_OK.
  template <class Deadline>
  void arm(Deadline& deadline) const {
    if (held.empty()) {
      deadline.expires_never();  // an idle pooled connection may wait for its next request forever
      return;
    }
    auto first = held.begin()->second.until;
    for (const auto& [id, h] : held) first = std::min(first, h.until);
    deadline.expires_at(first);
  }
};

// One TCP connection: READs (blocks sent on it), and LEASE / DONE when ucx is offered.
struct Session {
  explicit Session(tcp::socket s) : sock(std::move(s)) {}
  tcp::socket sock;
  Deadline deadline{sock};
  std::vector<uint8_t> payload;
  wire::Read read;
  std::vector<BlockHash> keys;
  std::vector<std::array<uint8_t, wire::kBlockFrameHeaderBytes>> headers;
  std::vector<asio::const_buffer> bufs;
  wire::Bytes done_frame;
  std::vector<std::byte> scratch;  // the corrupted segment of a fault
  Leases leases;
};

// One shm connection: LEASE / DONE.
struct ShmSession {
  explicit ShmSession(unix_stream::socket s) : sock(std::move(s)) {}
  unix_stream::socket sock;
  UnixDeadline deadline{sock};
  std::vector<uint8_t> payload;
  Leases leases;
};

template <class S>
asio::awaitable<bool> send_frame(S& s, const wire::Bytes& frame, std::chrono::milliseconds timeout) {
  s.deadline.expires_after(timeout);
  const auto r = co_await write_all(s.sock, s.deadline, frame);
  co_return r.has_value();
}

template <class S>
asio::awaitable<void> send_error(S& s, const State& st, XferError e, std::string msg) {
  wire::Bytes f;
  (void)wire::encode(wire::Error{static_cast<uint16_t>(e), std::move(msg)}, f);
  co_await send_frame(s, f, st.cfg.io_timeout);
}

asio::awaitable<bool> send_auth_ok(Session& s, State& st, wire::Bytes& f) {
  co_return co_await send_frame(s, f, st.cfg.auth_timeout);
}

// On the Unix socket AUTH_OK carries the arena's memfd: only a peer that proved the secret gets it.
asio::awaitable<bool> send_auth_ok(ShmSession& s, State& st, wire::Bytes& f) {
  wire::set_flags(f, wire::kFlagFd);
  s.deadline.expires_after(st.cfg.auth_timeout);
  co_return (co_await write_with_fd(s.sock, s.deadline, f, st.shm_fd.get())).has_value();
}

// HELLO -> AUTH -> AUTH_OK within auth_timeout; false: the peer is refused (and told why).
template <class S>
asio::awaitable<bool> handshake(S& s, State& st) {
  wire::Hello hello;
  hello.nonce = random_nonce();
  hello.engine_id = st.engine_id;
  hello.boot_id = st.boot_id;
  hello.shm_name = st.shm_name;
  hello.ucx = st.ucx ? 1 : 0;
  hello.layout = st.region.layout;
  hello.fingerprint = st.fingerprint;
  wire::Bytes f;
  if (!wire::encode(hello, f)) co_return false;  // the constructor checked the caps
  if (!co_await send_frame(s, f, st.cfg.auth_timeout)) co_return false;
  const auto h = co_await read_control_frame(s.sock, s.deadline, s.payload, false);
  wire::Auth auth;
  if (!h || h->type != wire::FrameType::kAuth || !wire::decode(s.payload, auth)) {
    co_await send_error(s, st, XferError::kProtocol, "expected AUTH");
    co_return false;
  }
  // One attempt per connection: a guess costs a connection and a handshake.
  if (!st.auth.check_client(hello.nonce, auth.nonce, auth.mac)) {
    co_await send_error(s, st, XferError::kAuth, "wrong secret");
    co_return false;
  }
  f.clear();
  wire::encode(wire::AuthOk{st.auth.server_mac(auth.nonce, hello.nonce)}, f);
  co_return co_await send_auth_ok(s, st, f);
}

// Stops sending mid-block (a fault): the peer must see a truncated transfer, then we wait for it to
// hang up so that our unread bytes do not turn our FIN into a reset.
asio::awaitable<void> truncate_connection(Session& s, const State& st) {
  error_code ec;
  s.sock.shutdown(tcp::socket::shutdown_send, ec);
  s.deadline.expires_after(st.cfg.io_timeout);
  std::array<uint8_t, 4096> sink;
  while (!ec) co_await s.sock.async_read_some(asio::buffer(sink), ec_token(ec));
}

// Serves one READ; false when the connection must close.
asio::awaitable<bool> serve_read(Session& s, State& st) {
  const KvLayout& l = st.region.layout;
  const wire::Read& r = s.read;
  const auto done = [&](XferError e, std::string msg) -> asio::awaitable<bool> {
    s.done_frame.clear();
    (void)wire::encode(wire::ReadDone{r.xfer_id, static_cast<uint16_t>(e), std::move(msg)}, s.done_frame);
    co_return co_await send_frame(s, s.done_frame, st.cfg.io_timeout);
  };
  auto lease = st.pins.lease(r.request_id, r.blocks, s.keys);
  if (!lease) co_return co_await done(lease.error(), std::string(to_string(lease.error())));
  for (uint32_t b : r.blocks)
    if (!l.has_block(b)) co_return co_await done(XferError::kBadBlock, "block out of range");

  const uint64_t bb = l.block_bytes();
  const size_t per_batch = std::max<uint64_t>(1, st.cfg.write_batch_bytes / bb);
  const auto& fault = st.cfg.fault;
  s.done_frame.clear();
  (void)wire::encode(wire::ReadDone{r.xfer_id, 0, {}}, s.done_frame);
  size_t i = 0;
  while (i < r.blocks.size()) {
    s.headers.resize(std::min(per_batch, r.blocks.size() - i));  // no reallocation below: bufs point in
    s.bufs.clear();
    bool truncate = false;
    for (size_t k = 0; k < s.headers.size(); ++k, ++i) {
      const auto b = static_cast<int32_t>(r.blocks[i]);
      const wire::BlockHeader bh{r.xfer_id, static_cast<uint32_t>(i), s.keys[i],
                                 block_checksum(l, st.region.base, b)};
      wire::encode_block_header(bh, bb, s.headers[k]);
      s.bufs.emplace_back(asio::buffer(s.headers[k]));
      truncate = fault.kind == TransferConfig::Fault::kTruncate && i == static_cast<size_t>(fault.block);
      uint64_t budget = truncate ? bb / 2 : bb;
      for (uint32_t seg = 0; seg < l.n_segments && budget > 0; ++seg) {
        const std::byte* p = st.region.base + l.offset(b, seg);
        if (fault.kind == TransferConfig::Fault::kCorrupt && i == static_cast<size_t>(fault.block) &&
            seg == 0) {
          s.scratch.assign(p, p + l.segment_bytes);
          s.scratch[0] ^= std::byte{0xff};
          p = s.scratch.data();
        }
        const uint64_t n = std::min(budget, l.segment_bytes);
        s.bufs.emplace_back(p, n);
        budget -= n;
      }
      if (truncate) break;
    }
    if (!truncate && i == r.blocks.size()) s.bufs.emplace_back(asio::buffer(s.done_frame));
    s.deadline.expires_after(st.cfg.io_timeout);
    error_code ec;
    co_await asio::async_write(s.sock, s.bufs, ec_token(ec));
    if (ec) co_return false;
    if (truncate) {
      co_await truncate_connection(s, st);
      co_return false;
    }
  }
  co_return true;
}

// Serves one LEASE: lease, hash while leased, answer LEASE_OK (or READ_DONE(error)); the lease is
// then held until DONE. false when the connection must close.
template <class S>
asio::awaitable<bool> serve_lease(S& s, State& st) {
  Leases& ls = s.leases;
  const KvLayout& l = st.region.layout;
  const wire::Lease& r = ls.lease;
  if (ls.held.contains(r.xfer_id)) {
    co_await send_error(s, st, XferError::kProtocol, "xfer id already leased");
    co_return false;
  }
  const auto refuse = [&](XferError e) -> asio::awaitable<bool> {
    ls.frame.clear();
    (void)wire::encode(wire::ReadDone{r.xfer_id, static_cast<uint16_t>(e), std::string(to_string(e))},
                       ls.frame);
    co_return co_await send_frame(s, ls.frame, st.cfg.io_timeout);
  };
  auto lease = st.pins.lease(r.request_id, r.blocks, ls.keys);
  if (!lease) co_return co_await refuse(lease.error());
  for (uint32_t b : r.blocks)
    if (!l.has_block(b)) co_return co_await refuse(XferError::kBadBlock);
  const auto& fault = st.cfg.fault;
  ls.lease_ok.xfer_id = r.xfer_id;
  ls.lease_ok.blocks.resize(r.blocks.size());
  for (size_t i = 0; i < r.blocks.size(); ++i) {
    ls.lease_ok.blocks[i] = {ls.keys[i],
                             block_checksum(l, st.region.base, static_cast<int32_t>(r.blocks[i]))};
    // The shared bytes cannot be corrupted for one reader, so the fault makes the checksum lie.
    if (fault.kind == TransferConfig::Fault::kCorrupt && i == static_cast<size_t>(fault.block))
      ls.lease_ok.blocks[i].checksum ^= 1;
  }
  ls.held.emplace(r.xfer_id,
                  Leases::Held{std::move(*lease), std::chrono::steady_clock::now() + st.cfg.io_timeout});
  ls.frame.clear();
  (void)wire::encode(ls.lease_ok, ls.frame);  // n <= kMaxLeaseBlocks: the decoder checked
  if (!co_await send_frame(s, ls.frame, st.cfg.io_timeout)) co_return false;
  // The truncate fault: the connection ends while the reader copies, so no DONE_OK ever comes.
  co_return !(fault.kind == TransferConfig::Fault::kTruncate &&
              static_cast<size_t>(fault.block) < r.blocks.size());
}

// UCX_INFO -> UCX_INFO_OK: what a UCX reader needs, only after AUTH_OK.
asio::awaitable<bool> serve_ucx_info(Session& s, State& st) {
  wire::UcxInfoOk info{reinterpret_cast<uint64_t>(st.region.base), st.ucx->address(), st.ucx_region->rkey()};
  s.leases.frame.clear();
  if (!wire::encode(info, s.leases.frame)) {  // UCX blobs over the cap: refuse rather than cut them
    co_await send_error(s, st, XferError::kIncompatible, "UCX address or rkey too large");
    co_return false;
  }
  co_return co_await send_frame(s, s.leases.frame, st.cfg.io_timeout);
}

// After the handshake: READ (tcp), LEASE / DONE (shm; tcp when ucx is offered), UCX_INFO (tcp when
// ucx is offered) and RELEASE, until the connection ends or misbehaves.
template <class S>
asio::awaitable<void> serve_frames(S& s, State& st) {
  constexpr bool kTcp = std::is_same_v<S, Session>;
  const bool leases = !kTcp || st.ucx != nullptr;
  const uint32_t max_read = std::min<uint32_t>(wire::kMaxReadBlocks, st.region.layout.n_blocks);
  const uint32_t max_lease = std::min<uint32_t>(wire::kMaxLeaseBlocks, st.region.layout.n_blocks);
  for (;;) {
    s.leases.arm(s.deadline);
    const auto h = co_await read_control_frame(s.sock, s.deadline, s.payload, false);
    if (!h) {
      if (h.error() == XferError::kProtocol) co_await send_error(s, st, XferError::kProtocol, "bad frame");
      co_return;
    }
    const auto bad = [&](const char* what) -> asio::awaitable<void> {
      co_await send_error(s, st, XferError::kProtocol, what);
    };
    switch (h->type) {
      case wire::FrameType::kRead:
        if constexpr (kTcp) {
          if (!wire::decode(s.payload, max_read, s.read)) co_return co_await bad("bad READ");
          if (!co_await serve_read(s, st)) co_return;
          continue;
        }
        break;
      case wire::FrameType::kLease:
        if (!leases) break;
        if (!wire::decode(s.payload, max_lease, s.leases.lease)) co_return co_await bad("bad LEASE");
        if (!co_await serve_lease(s, st)) co_return;
        continue;
      case wire::FrameType::kDone: {
        if (!leases) break;
        wire::Done d;
        if (!wire::decode(s.payload, d) || s.leases.held.erase(d.xfer_id) == 0)
          co_return co_await bad("bad DONE");
        s.leases.frame.clear();
        wire::encode(wire::DoneOk{d.xfer_id}, s.leases.frame);
        if (!co_await send_frame(s, s.leases.frame, st.cfg.io_timeout)) co_return;
        continue;
      }
      case wire::FrameType::kUcxInfo:
        if constexpr (kTcp) {
          wire::UcxInfo req;
          if (!st.ucx) break;
          if (!wire::decode(s.payload, req)) co_return co_await bad("bad UCX_INFO");
          if (!co_await serve_ucx_info(s, st)) co_return;
          continue;
        }
        break;
      case wire::FrameType::kRelease: {
        wire::Release rel;
        if (!wire::decode(s.payload, rel)) co_return co_await bad("bad RELEASE");
        if (st.on_release) st.on_release(rel.request_id, static_cast<ReleaseOutcome>(rel.outcome));
        continue;
      }
      default:
        break;
    }
    co_return co_await bad("unexpected frame");
  }
}

std::unordered_set<tcp::socket*>& live_set(State& st, tcp::socket*) {
  return st.live;
}
std::unordered_set<unix_stream::socket*>& live_set(State& st, unix_stream::socket*) {
  return st.live_unix;
}

// One connection, TCP or Unix: handshake, then its frames; its leases end with it.
template <class S, class Socket>
asio::awaitable<void> serve(std::shared_ptr<State> st, Socket sock) {
  S s(std::move(sock));
  auto& live = live_set(*st, &s.sock);
  live.insert(&s.sock);
  try {
    if constexpr (std::is_same_v<S, Session>) set_transfer_options(s.sock, st->cfg.socket_buffer_bytes);
    if (co_await handshake(s, *st)) co_await serve_frames(s, *st);
  } catch (const std::exception&) {
    // A failing random generator or allocation: this connection ends, the server goes on.
  }
  s.leases.held.clear();
  live.erase(&s.sock);
  error_code ignored;
  s.sock.close(ignored);
}

asio::awaitable<void> unix_accept_loop(std::shared_ptr<State> st) {
  while (!st->stopped) {
    error_code ec;
    unix_stream::socket sock = co_await st->unix_acceptor.async_accept(ec_token(ec));
    if (ec) {
      if (st->stopped || ec == asio::error::operation_aborted) break;
      continue;
    }
    // A Unix peer is a process of this host: it is let in as 127.0.0.1 would be.
    if (!st->cfg.allowed_peers.allows(asio::ip::address_v4::loopback())) continue;  // closed as it goes
    asio::co_spawn(st->ex, serve<ShmSession>(st, std::move(sock)), asio::detached);
  }
}

asio::awaitable<void> accept_loop(std::shared_ptr<State> st) {
  while (!st->stopped) {
    error_code ec;
    tcp::socket sock = co_await st->acceptor.async_accept(ec_token(ec));
    if (ec) {
      if (st->stopped || ec == asio::error::operation_aborted) break;
      continue;  // e.g. out of descriptors for a moment; the listener stays
    }
    const auto peer = sock.remote_endpoint(ec);
    if (ec || !st->cfg.allowed_peers.allows(peer.address())) continue;  // not a server of ours: closed
    asio::co_spawn(st->ex, serve<Session>(st, std::move(sock)), asio::detached);
  }
}

}  // namespace

TransferServer::TransferServer(asio::any_io_executor ex, TransferConfig config, KvRegion region,
                               std::string fingerprint, PinRegistry& pins, ReleaseFn on_release,
                               std::string engine_id) {
  check_region(region);
  if (region.layout.block_bytes() > UINT32_MAX - wire::kBlockHeaderPayload)
    fail("KV transfer: a block of {} bytes does not fit a BLOCK frame", region.layout.block_bytes());
  if (fingerprint.size() > wire::kMaxFingerprint)
    fail("KV transfer: fingerprint over {} bytes", wire::kMaxFingerprint);
  if (engine_id.size() > wire::kMaxEngineId) fail("KV transfer: engine id over {} bytes", wire::kMaxEngineId);
  st_ = std::make_shared<ServerState>(std::move(ex), std::move(config), region, std::move(fingerprint), pins,
                                      std::move(on_release), std::move(engine_id));
  error_code ec;
  const auto addr = asio::ip::make_address(st_->cfg.host, ec);
  if (ec) fail("KV transfer: '{}' is not an IP address", st_->cfg.host);
  const tcp::endpoint ep(addr, st_->cfg.port);
  auto& a = st_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  // Accepted sockets inherit the buffer sizes, and with them the window scale of their handshake.
  if (!ec) a.set_option(asio::socket_base::receive_buffer_size(st_->cfg.socket_buffer_bytes), ec);
  if (!ec) a.set_option(asio::socket_base::send_buffer_size(st_->cfg.socket_buffer_bytes), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail("KV transfer: cannot listen on {}:{}: {}", st_->cfg.host, st_->cfg.port, ec.message());
  port_ = a.local_endpoint().port();
}

TransferServer::~TransferServer() {
  stop();
}

void TransferServer::offer_shm(const SharedArena& arena) {
  const KvRegion& r = st_->region;
  if (!arena.writable() || arena.data() != r.base || arena.size() != r.layout.arena_bytes())
    fail("KV transfer: shm needs the region to be a whole shared arena ({} bytes at the region's base)",
         r.layout.arena_bytes());
  if (!st_->shm_name.empty()) fail("KV transfer: shm offered twice");
  UniqueFd ro = arena.readonly_fd();
  const std::string name = shm_socket_name(st_->engine_id);
  error_code ec;
  auto& a = st_->unix_acceptor;
  const auto ep = shm_endpoint(name);
  a.open(ep.protocol(), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error_code ignored;
    a.close(ignored);
    fail("KV transfer: cannot listen on the Unix socket @{}: {}", name, ec.message());
  }
  st_->shm_fd = std::move(ro);
  st_->shm_name = name;
}

void TransferServer::offer_ucx() {
  if (st_->ucx) fail("KV transfer: ucx offered twice");
  const KvRegion& r = st_->region;
  auto worker = std::make_unique<UcxWorker>(st_->ex, ucx_net_devices_for(st_->cfg.host));
  st_->ucx_region = std::make_unique<UcxRegistration>(worker->context(), r.base, r.layout.arena_bytes());
  st_->ucx = std::move(worker);
}

void TransferServer::start() {
  asio::co_spawn(st_->ex, accept_loop(st_), asio::detached);
  if (!st_->shm_name.empty()) asio::co_spawn(st_->ex, unix_accept_loop(st_), asio::detached);
}

void TransferServer::stop() {
  asio::post(st_->ex, [st = st_] {
    st->stopped = true;
    error_code ignored;
    st->acceptor.close(ignored);
    st->unix_acceptor.close(ignored);
    for (tcp::socket* s : st->live) s->close(ignored);
    for (unix_stream::socket* s : st->live_unix) s->close(ignored);
    if (st->ucx) st->ucx->stop();
  });
}

const std::string& TransferServer::engine_id() const {
  return st_->engine_id;
}

const std::string& TransferServer::shm_name() const {
  return st_->shm_name;
}

}  // namespace llmd::kv::transfer
