#pragma once
// The transfer backend interface, in NIXL's spirit: a peer is prepared once (connection, handshake,
// whatever metadata the backend needs), then batches of block reads are posted on it many times.
// Backends: tcp (tcp_backend.hpp); shm and ucx later. The reader chooses the backend per peer.
//
// Threading: a backend and its peers are used from one executor (a one-thread io_context or a strand);
// several read() calls may be in flight on one peer at once.
#include <cstdint>
#include <expected>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/asio.hpp"
#include "common/block_hash.hpp"
#include "engine/kv_transfer.hpp"
#include "kv/transfer/xfer_error.hpp"

namespace llmd::kv::transfer {

// Where the blocks are: what a prefill server's kv_transfer_params name.
struct PeerInfo {
  std::string engine_id;  // empty: accept whichever engine answers
  std::string host;
  uint16_t port = 0;
};

// One block to pull: the peer's block id, where it goes here, and the key it must carry (the
// engine's type: it decides which blocks are pulled).
using BlockPair = engine::KvBlockPair;

// A prepared peer: backend state behind an authenticated connection.
class Peer {
 public:
  virtual ~Peer() = default;
  virtual const PeerInfo& info() const = 0;
  // False once the connection failed: the caller prepares a new peer.
  virtual bool usable() const = 0;
};

// Outcome carried by RELEASE: what the reader did with the blocks (the prefill frees them either way).
enum class ReleaseOutcome : uint8_t { kPulled = 0, kFailed = 1, kNotNeeded = 2 };

class TransferBackend {
 public:
  virtual ~TransferBackend() = default;
  virtual std::string_view name() const = 0;

  // Connects, authenticates both ways and checks that the peer's layout and fingerprint are ours.
  // (By value: a coroutine starts when awaited or spawned, after a caller's temporary is gone.)
  virtual asio::awaitable<std::expected<std::unique_ptr<Peer>, XferError>> prepare(PeerInfo peer) = 0;

  // Pulls blocks pinned under remote_request_id into the local region; on success every local block
  // holds the remote bytes, with keys and checksums verified. On failure the local blocks named in
  // `blocks` hold unspecified bytes. `remote_request_id` and `blocks` are not copied: they must stay
  // alive until the call completes.
  virtual asio::awaitable<std::expected<void, XferError>> read(Peer& peer, std::string_view remote_request_id,
                                                               std::span<const BlockPair> blocks) = 0;

  // Tells the peer the blocks pinned under remote_request_id may be freed (sent, not acknowledged).
  virtual asio::awaitable<std::expected<void, XferError>> release(Peer& peer,
                                                                  std::string_view remote_request_id,
                                                                  ReleaseOutcome outcome) = 0;
};

}  // namespace llmd::kv::transfer
