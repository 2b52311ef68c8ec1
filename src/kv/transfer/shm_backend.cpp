#include "kv/transfer/shm_backend.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/deadline.hpp"
#include "common/error.hpp"
#include "kv/transfer/auth.hpp"
#include "kv/transfer/checksum.hpp"
#include "kv/transfer/client_handshake.hpp"
#include "kv/transfer/lease_client.hpp"
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

using Conn = LeaseConn<unix_stream::socket>;

class ShmPeer final : public Peer {
 public:
  ShmPeer(std::shared_ptr<Conn> c, std::shared_ptr<const SharedArena> remote)
      : conn(std::move(c)), remote(std::move(remote)) {}
  ~ShmPeer() override {
    error_code ignored;
    conn->sock.close(ignored);  // ends the reader loop, which drops the last reference
  }
  const PeerInfo& info() const override { return conn->info; }
  bool usable() const override { return !conn->broken; }
  std::shared_ptr<Conn> conn;
  // The peer's arena, read-only; reads in flight hold it too, so it outlives a peer dropped meanwhile.
  std::shared_ptr<const SharedArena> remote;
};

// Each segment is copied and hashed at once, while the copy is still in L1 (block_checksum's chain,
// segment by segment): the checksum covers the copy, so bytes that changed under the lease and a wrong
// copy are both caught, and the hash costs no second trip to memory.
std::expected<void, XferError> copy_verified(const KvLayout& l, const std::byte* remote, std::byte* local,
                                             std::span<const BlockPair> blocks,
                                             std::span<const wire::LeasedBlock> leased) {
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

}  // namespace

ShmBackend::ShmBackend(asio::any_io_executor ex, TransferConfig config, KvRegion local,
                       std::string fingerprint)
    : ex_(std::move(ex)),
      cfg_(std::move(config)),
      local_(local),
      fingerprint_(std::move(fingerprint)),
      auth_(std::make_unique<Authenticator>(cfg_.secret)),
      boot_id_(read_boot_id()) {
  check_region(local_);
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

  auto c = std::make_shared<Conn>(ex_, peer);
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
  std::shared_ptr<const SharedArena> remote;
  try {
    remote =
        std::make_shared<const SharedArena>(SharedArena::map_readonly(fd.get(), local_.layout.arena_bytes()));
  } catch (const Error&) {
    co_return std::unexpected(XferError::kProtocol);  // wrong size or not sealed: not an arena we trust
  }
  fd.reset();  // the mapping stays

  c->deadline.expires_never();
  asio::co_spawn(ex_, lease_reader_loop(c, cfg_.io_timeout), asio::detached);
  co_return std::make_unique<ShmPeer>(std::move(c), std::move(remote));
}

asio::awaitable<std::expected<void, XferError>> ShmBackend::read(Peer& peer,
                                                                 std::string_view remote_request_id,
                                                                 std::span<const BlockPair> blocks) {
  auto& shm = static_cast<ShmPeer&>(peer);
  const KvLayout& l = local_.layout;
  std::byte* local = local_.base;
  // Named, not a temporary in the co_await: g++ 12 destroys such temporaries twice.
  auto copy =
      [&l, local, remote = shm.remote](
          std::span<const BlockPair> b,
          std::span<const wire::LeasedBlock> leased) -> asio::awaitable<std::expected<void, XferError>> {
    co_return copy_verified(l, remote->data(), local, b, leased);
  };
  co_return co_await leased_read(shm.conn, cfg_.io_timeout, l, remote_request_id, blocks, std::move(copy));
}

asio::awaitable<std::expected<void, XferError>> ShmBackend::release(Peer& peer,
                                                                    std::string_view remote_request_id,
                                                                    ReleaseOutcome outcome) {
  co_return send_release(static_cast<ShmPeer&>(peer).conn, remote_request_id, static_cast<uint8_t>(outcome));
}

}  // namespace llmd::kv::transfer
