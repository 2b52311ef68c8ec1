#pragma once
// P/D disaggregation as the engine sees it. Prefill side: a finished prefill leg's blocks stay
// pinned, and a KvPinSink makes them readable by peers until the engine frees them. Decode side: a
// request may name blocks a prefill server holds for it (vLLM's kv_transfer_params), and a KvPuller
// moves them into this engine's KV arena. src/kv/transfer implements both (tcp, shm, ucx); the
// engine only decides which blocks are pinned, pulled (those it does not hold already) and where.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/block_hash.hpp"

namespace llmd::engine {

// Where a prefill server keeps a request's prompt blocks.
struct RemoteBlocks {
  std::string engine_id;  // the prefill server's engine, to tell a restarted one from the same
  std::string host;       // its transfer listener
  uint16_t port = 0;
  std::vector<int32_t> block_ids;  // the prompt's full blocks, in order
  std::string request_id;          // what they are pinned under there
};

// One block to pull: the peer's id, the id here, and the key its tokens must have (a check that both
// sides mean the same prompt).
struct KvBlockPair {
  int32_t remote = 0;
  int32_t local = 0;
  BlockHash key;
};

class KvPinSink {
 public:
  virtual ~KvPinSink() = default;
  // On the engine thread, before the request's last output reaches its sink (so before anyone can
  // be told where the blocks are): `blocks` pinned under `id` may be read by peers; keys[i] is the
  // key of blocks[i].
  virtual void pinned(const std::string& id, std::span<const int32_t> blocks,
                      std::span<const BlockHash> keys) = 0;
  // On the engine thread, before it frees them: peers may no longer read them. False while a peer
  // is reading them; the engine asks again a little later.
  virtual bool unpinned(const std::string& id) = 0;
};

class KvPuller {
 public:
  virtual ~KvPuller() = default;
  // Called on the engine thread; must not block. `done` runs exactly once, on any thread, true when
  // every block arrived whole; until then the engine neither reads nor reuses the local blocks.
  // Either way the prefill server is then told to free them.
  virtual void pull(const RemoteBlocks& from, std::vector<KvBlockPair> blocks,
                    std::function<void(bool ok)> done) = 0;
  // Nothing is needed from `from` (this engine holds the whole prefix): it may free its blocks.
  virtual void release(const RemoteBlocks& from) = 0;
};

}  // namespace llmd::engine
