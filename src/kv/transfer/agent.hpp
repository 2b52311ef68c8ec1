#pragma once
// One server's end of P/D disaggregation: the engine's KvPinSink and KvPuller (engine/kv_transfer.hpp)
// over the transfer engine. It serves the engine's pinned blocks to peers (TransferServer: tcp, and
// shm when the arena is shared memory) and pulls blocks from peers into the engine's arena, on its
// own I/O thread. Each peer is prepared once and reused, over shm when the mode allows and the peer
// is on this host (its Unix socket connects), else over tcp. After every pull, whatever its
// outcome, the peer is told to free its pin.
//
// Lifetime: create it before the engine (the engine's config points to it), attach() the engine,
// and destroy it after the engine (which waits for the pulls it started).
#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "common/asio.hpp"
#include "common/metrics.hpp"
#include "engine/engine.hpp"
#include "engine/kv_transfer.hpp"
#include "kv/transfer/pin_registry.hpp"
#include "kv/transfer/shm_backend.hpp"
#include "kv/transfer/tcp_backend.hpp"
#include "kv/transfer/transfer_config.hpp"
#include "kv/transfer/transfer_server.hpp"
#include "kv/transfer/ucx_backend.hpp"

namespace llmd::kv::transfer {

// How blocks are pulled: over tcp only, shm only (same host), shm where it works and tcp elsewhere,
// or ucx only (the server then offers ucx too).
enum class TransferMode { kTcp, kShm, kAuto, kUcx };

class TransferAgent final : public engine::KvPinSink, public engine::KvPuller {
 public:
  // Binds the transfer listener at once (port() is then known), and offers `arena` (the region's
  // shared memory, may be null) over shm. Throws llmd::Error for an empty secret, a region the
  // transfer engine cannot describe or an address it cannot bind.
  TransferAgent(TransferConfig config, engine::KvRegion region, std::string fingerprint, TransferMode mode,
                const SharedArena* arena);
  ~TransferAgent() override;
  TransferAgent(const TransferAgent&) = delete;
  TransferAgent& operator=(const TransferAgent&) = delete;

  // The engine whose pins peers release (RELEASE frames): set once, before any request.
  void attach(engine::Engine& engine) { engine_ = &engine; }

  uint16_t port() const { return server_->port(); }
  const std::string& engine_id() const { return server_->engine_id(); }

  // engine::KvPinSink (engine thread)
  void pinned(const std::string& id, std::span<const int32_t> blocks,
              std::span<const BlockHash> keys) override;
  bool unpinned(const std::string& id) override;
  // engine::KvPuller (engine thread; the work runs on the agent's thread)
  void pull(const engine::RemoteBlocks& from, std::vector<engine::KvBlockPair> blocks,
            std::function<void(bool ok)> done) override;
  void release(const engine::RemoteBlocks& from) override;

  // Counters for /metrics, read from any thread.
  struct Stats {
    std::atomic<uint64_t> pulls_ok{0};
    std::atomic<uint64_t> shm_pulls_ok{0};  // of pulls_ok, those over shm
    std::atomic<uint64_t> ucx_pulls_ok{0};  // of pulls_ok, those over ucx
    std::atomic<uint64_t> bytes_pulled{0};
    std::array<std::atomic<uint64_t>, kMaxXferError + 1> failures{};  // by XferError
  };
  const Stats& stats() const { return stats_; }
  // From now on, also counts into `registry` (the server's /metrics): llmd:kv_pulls_total{backend},
  // llmd:kv_transfer_bytes_total (pulled) and llmd:kv_transfer_failures_total{reason}. Call once,
  // before requests arrive.
  void export_metrics(metrics::Registry& registry, const std::string& model_name);

 private:
  // A prepared peer and the backend it belongs to.
  struct PeerEntry {
    std::shared_ptr<Peer> peer;
    TransferBackend* backend = nullptr;
  };
  // The prepared peer for `from` (prepared again if its connection failed). Shared: a pull holds
  // its peer while another replaces a broken one in the map.
  asio::awaitable<std::expected<PeerEntry, XferError>> peer(const engine::RemoteBlocks& from);
  asio::awaitable<void> run_pull(engine::RemoteBlocks from, std::vector<engine::KvBlockPair> blocks,
                                 std::function<void(bool)> done);
  asio::awaitable<void> run_release(engine::RemoteBlocks from, ReleaseOutcome outcome);

  TransferConfig cfg_;
  engine::KvRegion region_;
  asio::io_context ioc_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_{ioc_.get_executor()};
  PinRegistry pins_;
  std::unique_ptr<TransferServer> server_;
  TransferMode mode_;
  TcpBackend tcp_;
  std::unique_ptr<ShmBackend> shm_;                              // shm and auto
  std::unique_ptr<UcxBackend> ucx_;                              // ucx
  std::map<std::pair<std::string, uint16_t>, PeerEntry> peers_;  // agent thread only
  std::atomic<engine::Engine*> engine_{nullptr};
  Stats stats_;
  struct Exported {
    metrics::Counter* tcp_pulls = nullptr;
    metrics::Counter* shm_pulls = nullptr;
    metrics::Counter* ucx_pulls = nullptr;
    metrics::Counter* bytes = nullptr;
    std::array<metrics::Counter*, kMaxXferError + 1> failures{};
  } exported_;
  std::thread thread_;
};

}  // namespace llmd::kv::transfer
