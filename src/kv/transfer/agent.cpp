#include "kv/transfer/agent.hpp"

#include <fmt/format.h>

namespace llmd::kv::transfer {

TransferAgent::TransferAgent(TransferConfig config, engine::KvRegion region, std::string fingerprint,
                             TransferMode mode, const SharedArena* arena)
    : cfg_(std::move(config)),
      region_(region),
      mode_(mode),
      tcp_(ioc_.get_executor(), cfg_, region, fingerprint) {
  if (mode_ == TransferMode::kShm || mode_ == TransferMode::kAuto)
    shm_ = std::make_unique<ShmBackend>(ioc_.get_executor(), cfg_, region, fingerprint);
  if (mode_ == TransferMode::kUcx)
    ucx_ = std::make_unique<UcxBackend>(ioc_.get_executor(), cfg_, region, fingerprint);
  server_ = std::make_unique<TransferServer>(ioc_.get_executor(), cfg_, region, std::move(fingerprint), pins_,
                                             [this](std::string_view request_id, ReleaseOutcome) {
                                               if (engine::Engine* e = engine_.load())
                                                 e->kv_release(std::string(request_id));
                                             });
  if (arena) server_->offer_shm(*arena);  // peers on this host may then map it
  if (ucx_) server_->offer_ucx();         // a cluster told to use ucx reads this server with it too
  server_->start();
  thread_ = std::thread([this] { ioc_.run(); });
}

TransferAgent::~TransferAgent() {
  asio::post(ioc_, [this] {
    peers_.clear();  // closes the connections: their loops end
    server_->stop();
    if (ucx_) ucx_->stop();
  });
  work_.reset();
  thread_.join();
}

void TransferAgent::export_metrics(metrics::Registry& registry, const std::string& model_name) {
  auto& pulls = registry.counter("llmd:kv_pulls", "KV pulls that completed, by transfer backend",
                                 {"model_name", "engine", "backend"});
  exported_.tcp_pulls = &pulls.with({model_name, "0", "tcp"});
  exported_.shm_pulls = &pulls.with({model_name, "0", "shm"});
  exported_.ucx_pulls = &pulls.with({model_name, "0", "ucx"});
  exported_.bytes = &registry
                         .counter("llmd:kv_transfer_bytes", "Bytes of KV blocks pulled from prefill servers",
                                  {"model_name", "engine"})
                         .with({model_name, "0"});
  auto& failures = registry.counter("llmd:kv_transfer_failures", "KV pulls that failed, by reason",
                                    {"model_name", "engine", "reason"});
  for (uint16_t code = 1; code <= kMaxXferError; ++code) {
    const auto e = static_cast<XferError>(code);
    exported_.failures[code] = &failures.with({model_name, "0", std::string(to_string(e))});
  }
}

void TransferAgent::pinned(const std::string& id, std::span<const int32_t> blocks,
                           std::span<const BlockHash> keys) {
  pins_.pin(id, {blocks.begin(), blocks.end()}, {keys.begin(), keys.end()});
}

bool TransferAgent::unpinned(const std::string& id) {
  return pins_.unpin(id);
}

asio::awaitable<std::expected<TransferAgent::PeerEntry, XferError>> TransferAgent::peer(
    const engine::RemoteBlocks& from) {
  const auto key = std::make_pair(from.host, from.port);
  // A peer that answers with another engine id restarted: its old pins are gone (prepare() says so).
  const auto fits = [&](const PeerEntry& e) {
    return e.peer && e.peer->usable() &&
           (from.engine_id.empty() || e.peer->info().engine_id == from.engine_id);
  };
  if (auto it = peers_.find(key); it != peers_.end() && fits(it->second)) co_return it->second;
  PeerEntry fresh;
  std::expected<std::unique_ptr<Peer>, XferError> p = std::unexpected(XferError::kConnect);
  if (ucx_) {
    PeerInfo info{from.engine_id, from.host,
                  from.port};  // named: g++ 12 frees a braced temporary in co_await twice
    p = co_await ucx_->prepare(std::move(info));
    fresh.backend = ucx_.get();
  }
  if (shm_) {
    PeerInfo info{from.engine_id, from.host, from.port};
    p = co_await shm_->prepare(std::move(info));
    fresh.backend = shm_.get();
  }
  // Not on this host (or no shm offered there): kConnect, the one failure tcp may still get past.
  if (!p && p.error() == XferError::kConnect &&
      (mode_ == TransferMode::kTcp || mode_ == TransferMode::kAuto)) {
    PeerInfo info{from.engine_id, from.host, from.port};
    p = co_await tcp_.prepare(std::move(info));
    fresh.backend = &tcp_;
  }
  if (!p) co_return std::unexpected(p.error());
  fresh.peer = std::move(*p);
  // Another pull may have prepared one meanwhile: keep the first, so both share one connection.
  auto& slot = peers_[key];
  if (!fits(slot)) slot = std::move(fresh);
  co_return slot;
}

asio::awaitable<void> TransferAgent::run_pull(engine::RemoteBlocks from,
                                              std::vector<engine::KvBlockPair> blocks,
                                              std::function<void(bool)> done) {
  std::expected<void, XferError> r = std::unexpected(XferError::kConnect);
  auto p = co_await peer(from);
  if (!p) r = std::unexpected(p.error());
  if (p) r = co_await p->backend->read(*p->peer, from.request_id, blocks);
  if (r) {
    const bool shm = p->backend == shm_.get(), ucx = p->backend == ucx_.get();
    const uint64_t bytes = blocks.size() * region_.layout.block_bytes();
    stats_.pulls_ok.fetch_add(1, std::memory_order_relaxed);
    if (shm) stats_.shm_pulls_ok.fetch_add(1, std::memory_order_relaxed);
    if (ucx) stats_.ucx_pulls_ok.fetch_add(1, std::memory_order_relaxed);
    stats_.bytes_pulled.fetch_add(bytes, std::memory_order_relaxed);
    if (metrics::Counter* c = shm ? exported_.shm_pulls : ucx ? exported_.ucx_pulls : exported_.tcp_pulls)
      c->inc();
    if (exported_.bytes) exported_.bytes->inc(static_cast<double>(bytes));
  } else {
    const auto e = static_cast<size_t>(r.error());
    stats_.failures[e].fetch_add(1, std::memory_order_relaxed);
    if (exported_.failures[e]) exported_.failures[e]->inc();
  }
  done(r.has_value());
  if (p && p->peer->usable())
    co_await p->backend->release(*p->peer, from.request_id,
                                 r ? ReleaseOutcome::kPulled : ReleaseOutcome::kFailed);
}

asio::awaitable<void> TransferAgent::run_release(engine::RemoteBlocks from, ReleaseOutcome outcome) {
  if (auto p = co_await peer(from)) co_await p->backend->release(*p->peer, from.request_id, outcome);
}

void TransferAgent::pull(const engine::RemoteBlocks& from, std::vector<engine::KvBlockPair> blocks,
                         std::function<void(bool)> done) {
  asio::co_spawn(ioc_, run_pull(from, std::move(blocks), std::move(done)), asio::detached);
}

void TransferAgent::release(const engine::RemoteBlocks& from) {
  asio::co_spawn(ioc_, run_release(from, ReleaseOutcome::kNotNeeded), asio::detached);
}

}  // namespace llmd::kv::transfer
