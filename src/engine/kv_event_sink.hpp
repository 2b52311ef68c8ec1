#pragma once
// Where the block manager reports changes to its prefix cache (vLLM's KV events): the KV event
// publisher (src/kv) implements it for routers, tests record with it. An interface so that the
// engine does not depend on ZMQ.
//
// Threading: called only from the engine thread, in the order the changes happen, and inside the
// engine's step loop: implementations must not block (queue and return).
#include <cstdint>
#include <span>

#include "common/block_hash.hpp"

namespace llmd::engine {

class KvEventSink {
 public:
  virtual ~KvEventSink() = default;

  // Blocks `hashes` (a chain: each one's parent is the previous, the first one's is `parent`,
  // nullptr when it is the first block of a sequence) now hold KV for `token_ids`
  // (hashes.size() * block_size tokens).
  virtual void block_stored(std::span<const BlockHash> hashes, const BlockHash* parent,
                            std::span<const int32_t> token_ids, int32_t block_size) = 0;
  // The blocks were evicted: a lookup of these keys now misses.
  virtual void block_removed(std::span<const BlockHash> hashes) = 0;
  // Every key was dropped (reset_prefix_cache).
  virtual void all_blocks_cleared() = 0;
  // The engine calls this once at the end of every step: the changes since the previous call form
  // one batch (one KV-events message). A sink without batching ignores it.
  virtual void end_of_step() {}
};

}  // namespace llmd::engine
