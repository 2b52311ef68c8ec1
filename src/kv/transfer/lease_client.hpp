#pragma once
// The reader's side of a leased read, shared by the backends whose bytes do not travel on the control
// connection (shm: a mapping of the peer's arena; ucx: RDMA/one-sided reads of its region):
//
//   LEASE -> LEASE_OK (each block's key and checksum, computed by the server while leased)
//         -> keys checked -> the backend copies the blocks and checks their checksums
//         -> DONE -> DONE_OK (the lease held throughout; without it the copy is not trusted)
//
// A refused LEASE comes back as READ_DONE(error). Several reads may be in flight on one connection;
// replies are matched by xfer_id. The connection is a Unix socket (shm) or TCP (ucx).
//
// Threading: a connection and every call on it belong to its socket's executor (one that does not run
// handlers concurrently).
#include <chrono>
#include <cstdint>
#include <deque>
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/asio.hpp"
#include "common/deadline.hpp"
#include "kv/transfer/layout.hpp"
#include "kv/transfer/socket_io.hpp"
#include "kv/transfer/transfer_backend.hpp"
#include "kv/transfer/wire.hpp"

namespace llmd::kv::transfer {

// One read in flight; it lives on leased_read()'s coroutine frame.
struct LeasePending {
  LeasePending(asio::any_io_executor ex, uint64_t id)
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

// A control connection to a peer (the shape socket_io's send_frame expects), shared by the Peer
// handle and the loops that run on it.
template <class Socket>
struct LeaseConn {
  LeaseConn(asio::any_io_executor ex, PeerInfo i) : info(std::move(i)), sock(std::move(ex)) {}

  void fail_all(XferError e) {
    if (!broken) broken = e;
    for (auto& [id, p] : pending) p->answer(std::unexpected(e));
    pending.clear();
    error_code ignored;
    sock.close(ignored);
  }

  PeerInfo info;
  Socket sock;
  BasicDeadline<Socket> deadline{sock};
  std::optional<XferError> broken;
  std::unordered_map<uint64_t, LeasePending*> pending;
  uint64_t next_xfer = 1;
  std::deque<wire::Bytes> out;
  bool writing = false;
  std::vector<uint8_t> payload;
};

namespace lease_detail {

// One reply frame from the server; an error ends the connection.
template <class Socket>
std::expected<void, XferError> dispatch(LeaseConn<Socket>& c, wire::FrameType type) {
  const auto find = [&c](uint64_t id) -> LeasePending* {
    const auto it = c.pending.find(id);
    return it == c.pending.end() ? nullptr : it->second;
  };
  switch (type) {
    case wire::FrameType::kLeaseOk: {
      // The payload's xfer id picks the pending read, whose block count bounds the decode.
      if (c.payload.size() < 8) return std::unexpected(XferError::kProtocol);
      uint64_t id = 0;
      for (int i = 0; i < 8; ++i) id |= uint64_t{c.payload[i]} << (8 * i);
      LeasePending* p = find(id);
      if (!p || p->leased) return std::unexpected(XferError::kProtocol);
      const auto max = static_cast<uint32_t>(p->lease_ok.blocks.size());  // leased_read sized it
      if (!wire::decode(c.payload, max, p->lease_ok) || p->lease_ok.blocks.size() != max)
        return std::unexpected(XferError::kProtocol);
      p->leased = true;
      p->answer({});
      return {};
    }
    case wire::FrameType::kReadDone: {
      wire::ReadDone d;
      if (!wire::decode(c.payload, d)) return std::unexpected(XferError::kProtocol);
      LeasePending* p = find(d.xfer_id);
      const auto e = xfer_error_from_wire(d.status);
      if (!p || p->leased || !e) return std::unexpected(XferError::kProtocol);  // only refusals
      c.pending.erase(d.xfer_id);
      p->answer(std::unexpected(*e));
      return {};
    }
    case wire::FrameType::kDoneOk: {
      wire::DoneOk d;
      if (!wire::decode(c.payload, d)) return std::unexpected(XferError::kProtocol);
      LeasePending* p = find(d.xfer_id);
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

// Waits for the next answer to `p`.
inline asio::awaitable<std::expected<void, XferError>> next_reply(LeasePending& p) {
  while (!p.reply) {
    error_code ec;
    co_await p.wake.async_wait(ec_token(ec));
  }
  const auto r = *p.reply;
  p.reply.reset();
  co_return r;
}

}  // namespace lease_detail

// Reads the server's replies until the connection fails; spawn it once the handshake is done.
template <class Socket>
asio::awaitable<void> lease_reader_loop(std::shared_ptr<LeaseConn<Socket>> c,
                                        std::chrono::milliseconds io_timeout) {
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
    if (auto r = lease_detail::dispatch(*c, h->type); !r) {
      c->fail_all(r.error());
      co_return;
    }
  }
}

// One leased read of `blocks` (remote ids checked against `l` here too: the copy reads the peer's
// memory and writes our region directly). `copy(blocks, leased)` is called once the keys matched; it
// copies the blocks and checks each copy against leased[i].checksum, returning an
// asio::awaitable<std::expected<void, XferError>>.
template <class Socket, class Copy>
asio::awaitable<std::expected<void, XferError>> leased_read(std::shared_ptr<LeaseConn<Socket>> c,
                                                            std::chrono::milliseconds io_timeout,
                                                            const KvLayout& l, std::string_view request_id,
                                                            std::span<const BlockPair> blocks, Copy copy) {
  if (c->broken) co_return std::unexpected(*c->broken);
  if (blocks.empty()) co_return std::expected<void, XferError>{};
  if (blocks.size() > std::min<uint32_t>(wire::kMaxLeaseBlocks, l.n_blocks))
    co_return std::unexpected(XferError::kBadBlock);
  wire::Lease lease;
  lease.xfer_id = c->next_xfer++;
  lease.request_id = request_id;
  lease.blocks.reserve(blocks.size());
  for (const BlockPair& b : blocks) {
    if (!l.has_block(b.remote) || !l.has_block(b.local)) co_return std::unexpected(XferError::kBadBlock);
    lease.blocks.push_back(static_cast<uint32_t>(b.remote));
  }
  wire::Bytes f;
  if (!wire::encode(lease, f)) co_return std::unexpected(XferError::kProtocol);  // request id over its cap
  LeasePending p(c->sock.get_executor(), lease.xfer_id);
  p.lease_ok.blocks.resize(blocks.size());  // the reply's size, checked when it comes
  c->pending.emplace(p.xfer_id, &p);
  send_frame(c, std::move(f));
  c->deadline.expires_after(io_timeout);
  if (auto r = co_await lease_detail::next_reply(p); !r) co_return r;  // refused, or the connection failed

  // A wrong key means another prompt: nothing is copied.
  std::expected<void, XferError> verified;
  for (size_t i = 0; i < blocks.size() && verified; ++i)
    if (p.lease_ok.blocks[i].key != blocks[i].key) verified = std::unexpected(XferError::kKeyMismatch);
  if (verified) verified = co_await copy(blocks, std::span<const wire::LeasedBlock>(p.lease_ok.blocks));
  f.clear();
  wire::encode(wire::Done{p.xfer_id}, f);
  send_frame(c, std::move(f));
  c->deadline.expires_after(io_timeout);
  if (auto r = co_await lease_detail::next_reply(p); !r) co_return r;  // no DONE_OK: the lease may have ended
  co_return verified;
}

}  // namespace llmd::kv::transfer
