#include "kv/transfer/ucx_backend.hpp"

#include <optional>
#include <vector>

#include "common/error.hpp"
#include "kv/transfer/auth.hpp"
#include "kv/transfer/checksum.hpp"
#include "kv/transfer/client_handshake.hpp"
#include "kv/transfer/lease_client.hpp"
#include "kv/transfer/socket_io.hpp"
#include "kv/transfer/ucx_worker.hpp"

namespace llmd::kv::transfer {
namespace {

using Conn = LeaseConn<tcp::socket>;

// The UCX side of a peer: an endpoint to its worker and its region's rkey. Shared by the peer and
// the reads in flight on it, so a peer dropped meanwhile does not close the endpoint under them.
struct Remote {
  ~Remote() {
    if (rkey) ucp_rkey_destroy(rkey);
    if (ep) close_ep();
  }
  // Force-closes the endpoint: every get still posted on it completes (with an error) in progress.
  void close_ep() {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK;
    p.flags = UCP_EP_CLOSE_FLAG_FORCE;
    p.cb.send = [](void* request, ucs_status_t, void*) { ucp_request_free(request); };
    void* r = ucp_ep_close_nbx(ep, &p);
    (void)r;  // NULL or an error: done; a request: freed by the callback
    ep = nullptr;
    worker->drive();
  }

  std::shared_ptr<UcxWorker> worker;
  ucp_ep_h ep = nullptr;
  ucp_rkey_h rkey = nullptr;
  uint64_t base = 0;    // the region's address in the peer
  bool failed = false;  // UCX reported the peer unreachable
};

class UcxPeer final : public Peer {
 public:
  UcxPeer(std::shared_ptr<Conn> c, std::shared_ptr<Remote> r) : conn(std::move(c)), remote(std::move(r)) {}
  ~UcxPeer() override {
    error_code ignored;
    conn->sock.close(ignored);  // ends the reader loop, which drops the last reference
  }
  const PeerInfo& info() const override { return conn->info; }
  bool usable() const override { return !conn->broken && !remote->failed && remote->ep; }
  std::shared_ptr<Conn> conn;
  std::shared_ptr<Remote> remote;
};

// UCX operations in flight (the gets of one read, or a flush); it lives on the awaiting coroutine's
// frame, and every operation must complete before that frame goes (their callbacks point here, and
// gets write into our region).
struct Ops {
  explicit Ops(asio::any_io_executor ex) : wake(std::move(ex), asio::steady_timer::time_point::max()) {}
  static void done(void* request, ucs_status_t s, void* user) {
    auto* g = static_cast<Ops*>(user);
    if (s != UCS_OK && g->status == UCS_OK) g->status = s;
    ucp_request_free(request);
    if (--g->outstanding == 0) g->wake.cancel();
  }
  size_t outstanding = 0;
  ucs_status_t status = UCS_OK;
  asio::steady_timer wake;
};

// Posts one get per run of blocks that are consecutive both here and there, segment by segment.
void post_gets(const KvLayout& l, Remote& r, std::byte* local, std::span<const BlockPair> blocks, Ops& g) {
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = &Ops::done;
  p.user_data = &g;
  for (uint32_t s = 0; s < l.n_segments && g.status == UCS_OK; ++s) {
    for (size_t i = 0; i < blocks.size() && g.status == UCS_OK;) {
      size_t n = 1;
      while (i + n < blocks.size() && blocks[i + n].remote == blocks[i].remote + static_cast<int32_t>(n) &&
             blocks[i + n].local == blocks[i].local + static_cast<int32_t>(n))
        ++n;
      void* req = ucp_get_nbx(r.ep, local + l.offset(blocks[i].local, s), n * l.segment_bytes,
                              r.base + l.offset(blocks[i].remote, s), r.rkey, &p);
      if (UCS_PTR_IS_ERR(req))
        g.status = UCS_PTR_STATUS(req);
      else if (req)
        ++g.outstanding;  // NULL: done already
      i += n;
    }
  }
}

// Waits for every operation; past `timeout` the endpoint is closed, which completes the rest with errors.
asio::awaitable<std::expected<void, XferError>> finish_ops(Remote& r, Ops& g,
                                                           std::chrono::milliseconds timeout) {
  r.worker->drive();  // shared memory and cma complete here, with no event to wake us
  const auto until = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  while (g.outstanding > 0) {
    g.wake.expires_at(timed_out ? std::chrono::steady_clock::now() + std::chrono::milliseconds(10) : until);
    error_code ec;
    co_await g.wake.async_wait(ec_token(ec));
    if (g.outstanding == 0 || ec) continue;
    if (!timed_out) {
      timed_out = true;
      r.failed = true;
      if (r.ep) r.close_ep();
    } else {
      r.worker->drive();
    }
  }
  if (timed_out) co_return std::unexpected(XferError::kTimeout);
  if (g.status != UCS_OK) co_return std::unexpected(XferError::kTruncated);  // the peer went away
  co_return std::expected<void, XferError>{};
}

void on_ep_error(void* arg, ucp_ep_h, ucs_status_t) {
  static_cast<Remote*>(arg)->failed = true;
}

}  // namespace

UcxBackend::UcxBackend(asio::any_io_executor ex, TransferConfig config, KvRegion local,
                       std::string fingerprint)
    : ex_(std::move(ex)),
      cfg_(std::move(config)),
      local_(local),
      fingerprint_(std::move(fingerprint)),
      auth_(std::make_unique<Authenticator>(cfg_.secret)) {
  check_region(local_);
  worker_ = std::make_shared<UcxWorker>(ex_, ucx_net_devices_for(cfg_.host));
}

UcxBackend::~UcxBackend() = default;

void UcxBackend::stop() {
  worker_->stop();
}

asio::awaitable<std::expected<std::unique_ptr<Peer>, XferError>> UcxBackend::prepare(PeerInfo peer) {
  auto c = std::make_shared<Conn>(ex_, peer);
  const auto hello = co_await connect_and_authenticate(c->sock, c->deadline, c->payload, peer, cfg_, *auth_,
                                                       local_.layout, fingerprint_);
  if (!hello) co_return std::unexpected(hello.error());
  if (!hello->ucx) co_return std::unexpected(XferError::kIncompatible);  // the server offers no ucx

  wire::Bytes f;
  wire::encode(wire::UcxInfo{}, f);
  c->deadline.expires_after(cfg_.auth_timeout);
  if (auto w = co_await write_all(c->sock, c->deadline, f); !w) co_return std::unexpected(w.error());
  const auto h = co_await read_control_frame(c->sock, c->deadline, c->payload, false);
  if (!h) co_return std::unexpected(h.error());
  wire::UcxInfoOk info;
  if (h->type == wire::FrameType::kError) {
    wire::Error e;
    if (!wire::decode(c->payload, e)) co_return std::unexpected(XferError::kProtocol);
    co_return std::unexpected(xfer_error_from_wire(e.code).value_or(XferError::kProtocol));
  }
  if (h->type != wire::FrameType::kUcxInfoOk || !wire::decode(c->payload, info))
    co_return std::unexpected(XferError::kProtocol);

  auto r = std::make_shared<Remote>();
  r->worker = worker_;
  r->base = info.base;
  ucp_ep_params_t ep{};
  ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                  UCP_EP_PARAM_FIELD_ERR_HANDLER;
  ep.address = reinterpret_cast<const ucp_address_t*>(info.worker_address.data());
  // Peer failure detection: a dead prefill fails the gets instead of leaving them to io_timeout. UCX
  // 1.13's shared-memory transports cannot detect a failed peer, so on one host UCX then rides tcp or
  // cma; the shm backend is the one for one host.
  ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ep.err_handler.cb = &on_ep_error;
  ep.err_handler.arg = r.get();
  // A malformed address or rkey from the peer is refused by UCX, which checks what it unpacks.
  if (ucp_ep_create(worker_->worker(), &ep, &r->ep) != UCS_OK) {
    r->ep = nullptr;
    co_return std::unexpected(XferError::kConnect);
  }
  if (ucp_ep_rkey_unpack(r->ep, info.rkey.data(), &r->rkey) != UCS_OK) {
    r->rkey = nullptr;
    co_return std::unexpected(XferError::kProtocol);
  }
  // The wire-up is finished before the peer is handed out: Debian's UCX 1.13 aborts a server whose
  // reply to a wire-up request finds the requester gone (an assertion fixed upstream by UCX PR 8175),
  // so a reader must not vanish mid-wire-up when it can help it.
  Ops flush(ex_);
  ucp_request_param_t fp{};
  fp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  fp.cb.send = &Ops::done;
  fp.user_data = &flush;
  void* req = ucp_ep_flush_nbx(r->ep, &fp);
  if (UCS_PTR_IS_ERR(req)) co_return std::unexpected(XferError::kConnect);
  if (req) flush.outstanding = 1;
  if (auto f = co_await finish_ops(*r, flush, cfg_.connect_timeout); !f)
    co_return std::unexpected(f.error() == XferError::kTimeout ? XferError::kTimeout : XferError::kConnect);

  c->deadline.expires_never();
  asio::co_spawn(ex_, lease_reader_loop(c, cfg_.io_timeout), asio::detached);
  co_return std::make_unique<UcxPeer>(std::move(c), std::move(r));
}

asio::awaitable<std::expected<void, XferError>> UcxBackend::read(Peer& peer,
                                                                 std::string_view remote_request_id,
                                                                 std::span<const BlockPair> blocks) {
  auto& p = static_cast<UcxPeer&>(peer);
  if (!p.usable()) co_return std::unexpected(p.conn->broken.value_or(XferError::kConnect));
  const KvLayout& l = local_.layout;
  std::byte* local = local_.base;
  const auto timeout = cfg_.io_timeout;
  // Named, not a temporary in the co_await: g++ 12 destroys such temporaries twice.
  auto copy =
      [&l, local, timeout, ex = ex_, remote = p.remote](
          std::span<const BlockPair> b,
          std::span<const wire::LeasedBlock> leased) -> asio::awaitable<std::expected<void, XferError>> {
    if (!remote->ep) co_return std::unexpected(XferError::kConnect);
    Ops g(ex);
    post_gets(l, *remote, local, b, g);
    if (auto r = co_await finish_ops(*remote, g, timeout); !r) co_return r;
    for (size_t i = 0; i < b.size(); ++i)
      if (block_checksum(l, local, b[i].local) != leased[i].checksum)
        co_return std::unexpected(XferError::kChecksum);
    co_return std::expected<void, XferError>{};
  };
  co_return co_await leased_read(p.conn, cfg_.io_timeout, l, remote_request_id, blocks, std::move(copy));
}

asio::awaitable<std::expected<void, XferError>> UcxBackend::release(Peer& peer,
                                                                    std::string_view remote_request_id,
                                                                    ReleaseOutcome outcome) {
  co_return send_release(static_cast<UcxPeer&>(peer).conn, remote_request_id, static_cast<uint8_t>(outcome));
}

}  // namespace llmd::kv::transfer
