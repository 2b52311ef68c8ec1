#include "kv/transfer/shm_backend.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <optional>
#include <unordered_map>

#include "common/deadline.hpp"
#include "common/error.hpp"
#include "kv/transfer/auth.hpp"
#include "kv/transfer/checksum.hpp"
#include "kv/transfer/socket_io.hpp"

namespace llmd::kv::transfer {

// ---- Unix-socket helpers ----

std::string shm_socket_name(std::string_view engine_id) {
  return "llmd-kvt/" + std::string(engine_id);
}

unix_stream::endpoint shm_endpoint(std::string_view name) {
  std::string path(1, '\0');
  path += name;
  return unix_stream::endpoint(path);
}

wire::BootId read_boot_id() {
  wire::BootId id{};
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string s;
  if (!std::getline(f, s)) return id;
  const auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    c = static_cast<char>(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  size_t n = 0;
  for (size_t i = 0; i + 1 < s.size() && n < id.size(); ++i) {
    if (s[i] == '-') continue;
    const int hi = nib(s[i]), lo = nib(s[i + 1]);
    if (hi < 0 || lo < 0) return wire::BootId{};
    id[n++] = static_cast<uint8_t>(hi << 4 | lo);
    ++i;
  }
  return n == id.size() ? id : wire::BootId{};
}

asio::awaitable<std::expected<void, XferError>> write_with_fd(unix_stream::socket& s, UnixDeadline& deadline,
                                                              std::span<const uint8_t> bytes, int fd) {
  if (bytes.empty()) co_return std::unexpected(XferError::kProtocol);  // a descriptor needs a byte to ride on
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> cbuf{};
  iovec iov{const_cast<uint8_t*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf.data();
  msg.msg_controllen = cbuf.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  for (;;) {
    const ssize_t n = ::sendmsg(s.native_handle(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) co_return co_await write_all(s, deadline, bytes.subspan(static_cast<size_t>(n)));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      error_code ec;
      co_await s.async_wait(unix_stream::socket::wait_write, ec_token(ec));
      if (ec) co_return std::unexpected(io_error(ec, deadline, false));
      continue;
    }
    co_return std::unexpected(deadline.expired() ? XferError::kTimeout : XferError::kConnect);
  }
}

asio::awaitable<std::expected<void, XferError>> read_with_fd(unix_stream::socket& s, UnixDeadline& deadline,
                                                             std::span<uint8_t> out, UniqueFd& fd) {
  bool bad = false;
  size_t got = 0;
  while (got < out.size()) {
    // Room for a few descriptors, so that a peer sending several is seen (and its extras closed)
    // rather than cut off silently.
    alignas(cmsghdr) std::array<char, CMSG_SPACE(4 * sizeof(int))> cbuf{};
    iovec iov{out.data() + got, out.size() - got};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.data();
    msg.msg_controllen = cbuf.size();
    const ssize_t n = ::recvmsg(s.native_handle(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      error_code ec;
      co_await s.async_wait(unix_stream::socket::wait_read, ec_token(ec));
      if (ec) co_return std::unexpected(io_error(ec, deadline, false));
      continue;
    }
    if (n < 0) co_return std::unexpected(deadline.expired() ? XferError::kTimeout : XferError::kConnect);
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int received = -1;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (!fd && !bad) {
          fd.reset(received);
        } else {
          UniqueFd extra(received);
          bad = true;
        }
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) bad = true;
    if (n == 0) co_return std::unexpected(io_error(asio::error::eof, deadline, false));
    got += static_cast<size_t>(n);
  }
  if (bad) {
    fd.reset();
    co_return std::unexpected(XferError::kProtocol);
  }
  co_return std::expected<void, XferError>{};
}

// ---- The backend ----

namespace {

// One read() in flight; it lives on read()'s coroutine frame.
struct Pending {
  Pending(asio::any_io_executor ex, uint64_t id)
      : xfer_id(id), wake(std::move(ex), asio::steady_timer::time_point::max()) {}
  uint64_t xfer_id;
  bool leased = false;  // LEASE_OK came: the next reply is DONE_OK
  wire::LeaseOk lease_ok;
  std::optional<std::expected<void, XferError>> reply;  // set per step, then `wake` is cancelled
  asio::steady_timer wake;

  void answer(std::expected<void, XferError> r) {
    reply = r;
    wake.cancel();
  }
};

// A peer's Unix connection and the mapping of its arena, shared by the Peer handle and the loops
// that run on it.
struct Conn {
  Conn(asio::any_io_executor ex, PeerInfo i, const KvRegion& r) : info(std::move(i)), local(r), sock(ex) {}

  void fail_all(XferError e) {
    if (!broken) broken = e;
    for (auto& [id, p] : pending) p->answer(std::unexpected(e));
    pending.clear();
    error_code ignored;
    sock.close(ignored);
  }

  PeerInfo info;
  KvRegion local;
  unix_stream::socket sock;
  UnixDeadline deadline{sock};
  SharedArena remote;  // the peer's arena, read-only
  std::optional<XferError> broken;
  std::unordered_map<uint64_t, Pending*> pending;
  uint64_t next_xfer = 1;
  std::deque<wire::Bytes> out;
  bool writing = false;
  std::vector<uint8_t> payload;
};

class ShmPeer final : public Peer {
 public:
  explicit ShmPeer(std::shared_ptr<Conn> c) : conn(std::move(c)) {}
  ~ShmPeer() override {
    error_code ignored;
    conn->sock.close(ignored);  // ends the reader loop, which drops the last reference
  }
  const PeerInfo& info() const override { return conn->info; }
  bool usable() const override { return !conn->broken; }
  std::shared_ptr<Conn> conn;
};

// One reply frame from the server; an error ends the connection.
std::expected<void, XferError> dispatch(Conn& c, wire::FrameType type) {
  const auto find = [&c](uint64_t id) -> Pending* {
    const auto it = c.pending.find(id);
    return it == c.pending.end() ? nullptr : it->second;
  };
  switch (type) {
    case wire::FrameType::kLeaseOk: {
      // The payload's xfer id picks the pending read, whose block count bounds the decode.
      if (c.payload.size() < 8) return std::unexpected(XferError::kProtocol);
      uint64_t id = 0;
      for (int i = 0; i < 8; ++i) id |= uint64_t{c.payload[i]} << (8 * i);
      Pending* p = find(id);
      if (!p || p->leased) return std::unexpected(XferError::kProtocol);
      const auto max = static_cast<uint32_t>(p->lease_ok.blocks.size());  // read() sized it
      if (!wire::decode(c.payload, max, p->lease_ok) || p->lease_ok.blocks.size() != max)
        return std::unexpected(XferError::kProtocol);
      p->leased = true;
      p->answer({});
      return {};
    }
    case wire::FrameType::kReadDone: {
      wire::ReadDone d;
      if (!wire::decode(c.payload, d)) return std::unexpected(XferError::kProtocol);
      Pending* p = find(d.xfer_id);
      const auto e = xfer_error_from_wire(d.status);
      if (!p || p->leased || !e) return std::unexpected(XferError::kProtocol);  // only refusals
      c.pending.erase(d.xfer_id);
      p->answer(std::unexpected(*e));
      return {};
    }
    case wire::FrameType::kDoneOk: {
      wire::DoneOk d;
      if (!wire::decode(c.payload, d)) return std::unexpected(XferError::kProtocol);
      Pending* p = find(d.xfer_id);
      if (!p || !p->leased) return std::unexpected(XferError::kProtocol);
      c.pending.erase(d.xfer_id);
      p->answer({});
      return {};
    }
    case wire::FrameType::kError: {
      wire::Error e;
      if (!wire::decode(c.payload, e)) return std::unexpected(XferError::kProtocol);
      return std::unexpected(xfer_error_from_wire(e.code).value_or(XferError::kProtocol));
    }
    default:
      return std::unexpected(XferError::kProtocol);
  }
}

asio::awaitable<void> reader_loop(std::shared_ptr<Conn> c, std::chrono::milliseconds io_timeout) {
  for (;;) {
    // Idle, a pooled connection may wait forever; with reads pending each frame re-arms the limit.
    if (c->pending.empty())
      c->deadline.expires_never();
    else
      c->deadline.expires_after(io_timeout);
    const auto h = co_await read_control_frame(c->sock, c->deadline, c->payload, !c->pending.empty());
    if (!h) {
      c->fail_all(h.error());
      co_return;
    }
    if (auto r = dispatch(*c, h->type); !r) {
      c->fail_all(r.error());
      co_return;
    }
  }
}

// Waits for the next answer to `p`.
asio::awaitable<std::expected<void, XferError>> next_reply(Pending& p) {
  while (!p.reply) {
    error_code ec;
    co_await p.wake.async_wait(ec_token(ec));
  }
  const auto r = *p.reply;
  p.reply.reset();
  co_return r;
}

// Keys first (a wrong key means another prompt: nothing to copy), then each segment is copied and
// hashed at once, while the copy is still in L1 (block_checksum's chain, segment by segment): the
// checksum covers the copy, so bytes that changed under the lease and a wrong copy are both caught,
// and the hash costs no second trip to memory.
std::expected<void, XferError> copy_verified(const KvLayout& l, const std::byte* remote, std::byte* local,
                                             std::span<const BlockPair> blocks,
                                             const std::vector<wire::LeasedBlock>& leased) {
  for (size_t i = 0; i < blocks.size(); ++i)
    if (leased[i].key != blocks[i].key) return std::unexpected(XferError::kKeyMismatch);
  for (size_t i = 0; i < blocks.size(); ++i) {
    uint64_t c = 0;
    for (uint32_t s = 0; s < l.n_segments; ++s) {
      std::byte* dst = local + l.offset(blocks[i].local, s);
      std::memcpy(dst, remote + l.offset(blocks[i].remote, s), l.segment_bytes);
      c = xxh3_64(dst, l.segment_bytes, c);
    }
    if (c != leased[i].checksum) return std::unexpected(XferError::kChecksum);
  }
  return {};
}

XferError handshake_error(const std::expected<wire::FrameHeader, XferError>& h) {
  return h ? XferError::kProtocol : h.error();
}

}  // namespace

ShmBackend::ShmBackend(asio::any_io_executor ex, TransferConfig config, KvRegion local,
                       std::string fingerprint)
    : ex_(std::move(ex)),
      cfg_(std::move(config)),
      local_(local),
      fingerprint_(std::move(fingerprint)),
      auth_(std::make_unique<Authenticator>(cfg_.secret)),
      boot_id_(read_boot_id()) {
  check_layout(local_.layout);
  if (!local_.base) fail("KV transfer: the region has no memory");
}

ShmBackend::~ShmBackend() = default;

asio::awaitable<std::expected<std::string, XferError>> ShmBackend::socket_name_over_tcp(
    const PeerInfo& peer) {
  error_code ec;
  tcp::resolver resolver(ex_);
  const auto endpoints = co_await resolver.async_resolve(peer.host, std::to_string(peer.port), ec_token(ec));
  if (ec) co_return std::unexpected(XferError::kConnect);
  tcp::socket sock(ex_);
  Deadline deadline(sock);
  deadline.expires_after(cfg_.connect_timeout);
  co_await asio::async_connect(sock, endpoints, ec_token(ec));
  if (ec) co_return std::unexpected(deadline.expired() ? XferError::kTimeout : XferError::kConnect);
  deadline.expires_after(cfg_.auth_timeout);
  std::vector<uint8_t> payload;
  const auto h = co_await read_control_frame(sock, deadline, payload, false);
  if (!h || h->type != wire::FrameType::kHello) co_return std::unexpected(handshake_error(h));
  wire::Hello hello;
  if (!wire::decode(payload, hello)) co_return std::unexpected(XferError::kProtocol);
  // Unauthenticated so far, and it need not be: the Unix socket it names authenticates both ways.
  if (hello.shm_name.empty() || hello.boot_id != boot_id_ || boot_id_ == wire::BootId{})
    co_return std::unexpected(XferError::kConnect);  // no shm offered, or another host
  co_return hello.shm_name;
}

asio::awaitable<std::expected<std::unique_ptr<Peer>, XferError>> ShmBackend::prepare(PeerInfo peer) {
  std::string name;
  if (!peer.engine_id.empty()) {
    name = shm_socket_name(peer.engine_id);
  } else {
    auto n = co_await socket_name_over_tcp(peer);
    if (!n) co_return std::unexpected(n.error());
    name = std::move(*n);
  }
  if (name.size() + 1 >= sizeof(sockaddr_un::sun_path)) co_return std::unexpected(XferError::kConnect);

  auto c = std::make_shared<Conn>(ex_, peer, local_);
  error_code ec;
  c->deadline.expires_after(cfg_.connect_timeout);
  co_await c->sock.async_connect(shm_endpoint(name), ec_token(ec));
  if (ec) co_return std::unexpected(c->deadline.expired() ? XferError::kTimeout : XferError::kConnect);

  c->deadline.expires_after(cfg_.auth_timeout);
  auto h = co_await read_control_frame(c->sock, c->deadline, c->payload, false);
  wire::Hello hello;
  if (!h || h->type != wire::FrameType::kHello) co_return std::unexpected(handshake_error(h));
  if (!wire::decode(c->payload, hello)) co_return std::unexpected(XferError::kProtocol);
  const wire::Nonce nonce_c = random_nonce();
  wire::Bytes f;
  wire::encode(wire::Auth{nonce_c, auth_->client_mac(hello.nonce, nonce_c)}, f);
  if (auto w = co_await write_all(c->sock, c->deadline, f); !w) co_return std::unexpected(w.error());

  // The reply's header is read with recvmsg: the memfd rides on its first byte.
  std::array<uint8_t, wire::kFrameHeaderBytes> hb;
  UniqueFd fd;
  if (auto r = co_await read_with_fd(c->sock, c->deadline, hb, fd); !r) co_return std::unexpected(r.error());
  const auto rh = wire::decode_header(hb);
  if (!rh || rh->type == wire::FrameType::kBlock) co_return std::unexpected(XferError::kProtocol);
  c->payload.resize(rh->payload_len);
  co_await asio::async_read(c->sock, asio::buffer(c->payload), ec_token(ec));
  if (ec) co_return std::unexpected(io_error(ec, c->deadline, false));
  if (auto ok = check_server_reply(rh->type, c->payload, *auth_, hello, nonce_c, local_.layout, fingerprint_,
                                   peer.engine_id);
      !ok)
    co_return std::unexpected(ok.error());
  // A Unix connect proves this kernel; an unequal boot id would be a server lying about itself.
  if (hello.boot_id != boot_id_) co_return std::unexpected(XferError::kConnect);
  if (!(rh->flags & wire::kFlagFd) || !fd) co_return std::unexpected(XferError::kProtocol);
  try {
    c->remote = SharedArena::map_readonly(fd.get(), local_.layout.arena_bytes());
  } catch (const Error&) {
    co_return std::unexpected(XferError::kProtocol);  // wrong size or not sealed: not an arena we trust
  }
  fd.reset();  // the mapping stays

  c->deadline.expires_never();
  asio::co_spawn(ex_, reader_loop(c, cfg_.io_timeout), asio::detached);
  co_return std::make_unique<ShmPeer>(std::move(c));
}

asio::awaitable<std::expected<void, XferError>> ShmBackend::read(Peer& peer,
                                                                 std::string_view remote_request_id,
                                                                 std::span<const BlockPair> blocks) {
  const std::shared_ptr<Conn> c = static_cast<ShmPeer&>(peer).conn;  // a copy: alive across the waits
  if (c->broken) co_return std::unexpected(*c->broken);
  if (blocks.empty()) co_return std::expected<void, XferError>{};
  const KvLayout& l = local_.layout;
  if (blocks.size() > std::min<uint32_t>(wire::kMaxLeaseBlocks, l.n_blocks))
    co_return std::unexpected(XferError::kBadBlock);
  wire::Lease lease;
  lease.xfer_id = c->next_xfer++;
  lease.request_id = remote_request_id;
  lease.blocks.reserve(blocks.size());
  for (const BlockPair& b : blocks) {
    // The server checks the remote ids against its pins; both are checked here as well, since the
    // copy reads the mapping and writes our region directly.
    if (!l.has_block(b.remote) || !l.has_block(b.local)) co_return std::unexpected(XferError::kBadBlock);
    lease.blocks.push_back(static_cast<uint32_t>(b.remote));
  }
  wire::Bytes f;
  if (!wire::encode(lease, f)) co_return std::unexpected(XferError::kProtocol);  // request id over its cap
  Pending p(ex_, lease.xfer_id);
  p.lease_ok.blocks.resize(blocks.size());  // the reply's size, checked when it comes
  c->pending.emplace(p.xfer_id, &p);
  send_frame(c, std::move(f));
  c->deadline.expires_after(cfg_.io_timeout);
  if (auto r = co_await next_reply(p); !r) co_return r;  // refused, or the connection failed

  const auto verified = copy_verified(l, c->remote.data(), local_.base, blocks, p.lease_ok.blocks);
  f.clear();
  wire::encode(wire::Done{p.xfer_id}, f);
  send_frame(c, std::move(f));
  c->deadline.expires_after(cfg_.io_timeout);
  if (auto r = co_await next_reply(p); !r) co_return r;  // no DONE_OK: the lease may have ended
  co_return verified;
}

asio::awaitable<std::expected<void, XferError>> ShmBackend::release(Peer& peer,
                                                                    std::string_view remote_request_id,
                                                                    ReleaseOutcome outcome) {
  co_return send_release(static_cast<ShmPeer&>(peer).conn, remote_request_id, static_cast<uint8_t>(outcome));
}

}  // namespace llmd::kv::transfer
