#pragma once
// The decode side of P/D disaggregation as the engine sees it: a request may name blocks a prefill
// server holds for it (vLLM's kv_transfer_params), and a KvPuller moves them into this engine's KV
// arena (src/kv/transfer implements it over tcp, shm, ucx). The engine only decides which blocks to
// pull (those it does not hold already) and where they go.
#include <cstdint>
#include <functional>
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
