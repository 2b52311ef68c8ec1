#include "kv/transfer/tcp_backend.hpp"

#include <array>
#include <deque>
#include <optional>
#include <vector>

#include "common/deadline.hpp"
#include "common/error.hpp"
#include "kv/transfer/auth.hpp"
#include "kv/transfer/client_handshake.hpp"
#include "kv/transfer/socket_io.hpp"
#include "kv/transfer/wire.hpp"

namespace llmd::kv::transfer {
namespace {

// One read() waiting for its blocks; it lives on read()'s coroutine frame.
struct Pending {
  Pending(asio::any_io_executor ex, uint64_t id, std::span<const BlockPair> b)
      : xfer_id(id), blocks(b), wake(std::move(ex), asio::steady_timer::time_point::max()) {}
  uint64_t xfer_id;
  std::span<const BlockPair> blocks;
  uint32_t next = 0;                // index of the next BLOCK expected
  std::optional<XferError> failed;  // the first bad block; the rest of the READ is still drained
  std::optional<std::expected<void, XferError>> result;  // set once, then `wake` is cancelled
  asio::steady_timer wake;
};

// A peer's connection, shared by the Peer handle and the loops that run on it (which may outlive
// the handle by one wake-up).
struct Conn {
  Conn(asio::any_io_executor ex, PeerInfo i, std::chrono::milliseconds timeout, const KvRegion& r)
      : info(std::move(i)), io_timeout(timeout), local(r), sock(std::move(ex)) {}

  void fail_all(XferError e) {
    if (!broken) broken = e;
    for (Pending* p : pending) {
      p->result = std::unexpected(e);
      p->wake.cancel();
    }
    pending.clear();
    error_code ignored;
    sock.close(ignored);
  }
  void complete_front(std::expected<void, XferError> r) {
    Pending* p = pending.front();
    pending.pop_front();
    p->result = r;
    p->wake.cancel();
  }

  PeerInfo info;
  std::chrono::milliseconds io_timeout;
  KvRegion local;
  tcp::socket sock;
  Deadline deadline{sock};
  std::optional<XferError> broken;
  std::deque<Pending*> pending;  // in the order their READs were sent, which is the order of replies
  uint64_t next_xfer = 1;
  std::deque<wire::Bytes> out;  // frames waiting for the writer
  bool writing = false;
  std::vector<uint8_t> payload;
  std::vector<asio::mutable_buffer> scatter;
};

class TcpPeer final : public Peer {
 public:
  explicit TcpPeer(std::shared_ptr<Conn> c) : conn(std::move(c)) {}
  ~TcpPeer() override {
    error_code ignored;
    conn->sock.close(ignored);  // ends the reader loop
  }
  const PeerInfo& info() const override { return conn->info; }
  bool usable() const override { return !conn->broken; }
  std::shared_ptr<Conn> conn;
};

// Reads one BLOCK frame whose header `h` was read; an error ends the connection.
asio::awaitable<std::expected<void, XferError>> read_block(Conn& c, const wire::FrameHeader& h) {
  const KvLayout& l = c.local.layout;
  if (!wire::check_block_length(h, l.block_bytes())) co_return std::unexpected(XferError::kProtocol);
  std::array<uint8_t, wire::kBlockHeaderPayload> hb;
  error_code ec;
  co_await asio::async_read(c.sock, asio::buffer(hb), ec_token(ec));
  if (ec) co_return std::unexpected(io_error(ec, c.deadline, true));
  wire::BlockHeader bh;
  if (!wire::decode(hb, bh) || c.pending.empty()) co_return std::unexpected(XferError::kProtocol);
  Pending& p = *c.pending.front();
  if (bh.xfer_id != p.xfer_id || bh.index != p.next || p.next >= p.blocks.size())
    co_return std::unexpected(XferError::kProtocol);
  const BlockPair& pair = p.blocks[p.next++];
  if (bh.key != pair.key && !p.failed) p.failed = XferError::kKeyMismatch;
  // Straight into the local block's segments. After a failed block they are still the destination:
  // the caller treats them as garbage, and the stream stays in step for the next READ.
  c.scatter.clear();
  for (uint32_t s = 0; s < l.n_segments; ++s)
    c.scatter.emplace_back(c.local.base + l.offset(pair.local, s), l.segment_bytes);
  co_await asio::async_read(c.sock, c.scatter, ec_token(ec));
  if (ec) co_return std::unexpected(io_error(ec, c.deadline, true));
  if (!p.failed && block_checksum(l, c.local.base, pair.local) != bh.checksum)
    p.failed = XferError::kChecksum;
  co_return std::expected<void, XferError>{};
}

asio::awaitable<std::expected<void, XferError>> read_done(Conn& c) {
  wire::ReadDone d;
  if (!wire::decode(c.payload, d) || c.pending.empty() || d.xfer_id != c.pending.front()->xfer_id)
    co_return std::unexpected(XferError::kProtocol);
  Pending& p = *c.pending.front();
  if (d.status != 0) {
    const auto e = xfer_error_from_wire(d.status);
    c.complete_front(std::unexpected(e.value_or(XferError::kProtocol)));
  } else if (p.failed) {
    c.complete_front(std::unexpected(*p.failed));
  } else if (p.next != p.blocks.size()) {
    co_return std::unexpected(XferError::kProtocol);  // fewer blocks than asked for
  } else {
    c.complete_front({});
  }
  co_return std::expected<void, XferError>{};
}

// Takes every frame the server sends after the handshake, for as long as the connection lives.
asio::awaitable<void> reader_loop(std::shared_ptr<Conn> c) {
  std::array<uint8_t, wire::kFrameHeaderBytes> hb;
  error_code ec;
  for (;;) {
    // Idle (nothing pending) the connection may wait for the next READ forever; read() arms the
    // deadline when it posts one, and each frame re-arms it while any is pending.
    if (c->pending.empty())
      c->deadline.expires_never();
    else
      c->deadline.expires_after(c->io_timeout);
    co_await asio::async_read(c->sock, asio::buffer(hb), ec_token(ec));
    if (ec) break;
    const auto h = wire::decode_header(hb);
    if (!h) {
      c->fail_all(XferError::kProtocol);
      co_return;
    }
    std::expected<void, XferError> r;
    if (h->type == wire::FrameType::kBlock) {
      r = co_await read_block(*c, *h);
    } else {
      c->payload.resize(h->payload_len);  // a control frame: <= kMaxControlPayload
      co_await asio::async_read(c->sock, asio::buffer(c->payload), ec_token(ec));
      if (ec) break;
      if (h->type == wire::FrameType::kReadDone) {
        r = co_await read_done(*c);
      } else if (h->type == wire::FrameType::kError) {
        wire::Error e;
        r = std::unexpected(wire::decode(c->payload, e)
                                ? xfer_error_from_wire(e.code).value_or(XferError::kProtocol)
                                : XferError::kProtocol);
      } else {
        r = std::unexpected(XferError::kProtocol);
      }
    }
    if (!r) {
      c->fail_all(r.error());
      co_return;
    }
  }
  // EOF, reset, timeout, or the Peer handle closed the socket.
  c->fail_all(io_error(ec, c->deadline, !c->pending.empty()));
}

}  // namespace

TcpBackend::TcpBackend(asio::any_io_executor ex, TransferConfig config, KvRegion local,
                       std::string fingerprint)
    : ex_(std::move(ex)),
      cfg_(std::move(config)),
      local_(local),
      fingerprint_(std::move(fingerprint)),
      auth_(std::make_unique<Authenticator>(cfg_.secret)) {
  check_region(local_);
}

TcpBackend::~TcpBackend() = default;

asio::awaitable<std::expected<std::unique_ptr<Peer>, XferError>> TcpBackend::prepare(PeerInfo peer) {
  auto c = std::make_shared<Conn>(ex_, peer, cfg_.io_timeout, local_);
  const auto hello = co_await connect_and_authenticate(c->sock, c->deadline, c->payload, peer, cfg_, *auth_,
                                                       local_.layout, fingerprint_);
  if (!hello) co_return std::unexpected(hello.error());
  asio::co_spawn(ex_, reader_loop(c), asio::detached);
  co_return std::make_unique<TcpPeer>(std::move(c));
}

asio::awaitable<std::expected<void, XferError>> TcpBackend::read(Peer& peer,
                                                                 std::string_view remote_request_id,
                                                                 std::span<const BlockPair> blocks) {
  const std::shared_ptr<Conn>& c = static_cast<TcpPeer&>(peer).conn;
  if (c->broken) co_return std::unexpected(*c->broken);
  if (blocks.empty()) co_return std::expected<void, XferError>{};
  const KvLayout& l = local_.layout;
  if (blocks.size() > std::min<uint32_t>(wire::kMaxReadBlocks, l.n_blocks))
    co_return std::unexpected(XferError::kBadBlock);
  wire::Read r;
  r.xfer_id = c->next_xfer++;
  r.request_id = remote_request_id;
  r.blocks.reserve(blocks.size());
  for (const BlockPair& b : blocks) {
    // The remote ids are checked by the server; ours must not send bytes outside our region.
    if (b.remote < 0 || !l.has_block(b.local)) co_return std::unexpected(XferError::kBadBlock);
    r.blocks.push_back(static_cast<uint32_t>(b.remote));
  }
  wire::Bytes f;
  if (!wire::encode(r, f)) co_return std::unexpected(XferError::kProtocol);  // request id over its cap
  Pending p(ex_, r.xfer_id, blocks);
  c->pending.push_back(&p);
  send_frame(c, std::move(f));
  c->deadline.expires_after(cfg_.io_timeout);
  // Nothing between posting and waiting suspends, so the reply cannot complete `p` before the wait.
  while (!p.result) {
    error_code ec;
    co_await p.wake.async_wait(ec_token(ec));
  }
  co_return *p.result;
}

asio::awaitable<std::expected<void, XferError>> TcpBackend::release(Peer& peer,
                                                                    std::string_view remote_request_id,
                                                                    ReleaseOutcome outcome) {
  co_return send_release(static_cast<TcpPeer&>(peer).conn, remote_request_id, static_cast<uint8_t>(outcome));
}

}  // namespace llmd::kv::transfer
