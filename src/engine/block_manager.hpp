#pragma once
// The server's KV block manager: which blocks of the pool are free, which sequences hold each one,
// and which full blocks hold KV that a later request with the same prefix can reuse (the prefix
// cache, keyed by BlockHash; see common/block_hash.hpp). Like BlockAllocator it only keeps
// metadata; KV storage belongs to the compute backend.
//
// A block is in exactly one state:
//   free       no references, no key               (a stack: reused first, nothing is lost)
//   evictable  no references, holds a cached key   (an LRU list: still a prefix hit until evicted)
//   referenced one or more references, with or without a key
// Every operation is O(1) per block: an intrusive doubly linked LRU over block ids and a hash map
// from key to block.
//
// Threading: owned and used only by the engine thread; no locks. Events go to `events` on that
// thread (see KvEventSink).
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/block_hash.hpp"
#include "engine/kv_event_sink.hpp"

namespace llmd::engine {

struct BlockManagerConfig {
  int32_t n_blocks = 0;
  int32_t block_size = 16;
  bool prefix_caching = true;
};

class BlockManager {
 public:
  explicit BlockManager(BlockManagerConfig config, KvEventSink* events = nullptr);

  // Longest run of leading blocks whose keys are cached: takes a reference on each (a block in
  // the evictable LRU leaves it), appends their ids to `table` and returns how many. Pass only the
  // keys of blocks the request may reuse: the last prompt token must still be computed to get
  // logits, so for a fully cached prompt leave out its last block.
  // Counts vLLM's prefix-cache metrics in tokens: queries += query_tokens (the prompt length;
  // hashes.size() * block_size when negative), hits += returned blocks * block_size.
  // With prefix caching off: returns 0 and counts nothing.
  int32_t acquire_cached_prefix(std::span<const BlockHash> hashes, std::vector<int32_t>& table,
                                int64_t query_tokens = -1);

  // A block for new KV, with one reference: a free block first, else the least recently released
  // evictable block, whose key is dropped (BlockRemoved); nullopt when every block is referenced.
  std::optional<int32_t> allocate();

  // After the step that filled `block` (held, full, not yet keyed): registers it under `hash` so
  // later requests reuse it and emits BlockStored(hash, parent, tokens, block_size). `parent` is
  // the previous block's key, nullptr for a sequence's first block (vLLM's convention; not the
  // root). If another block already holds `hash` (two requests computed the same prefix at once),
  // the existing mapping stays and this block stays unkeyed: freed normally on release. A second
  // commit of the same block under the same key is a no-op. No-op when prefix caching is off.
  void commit_full_block(int32_t block, const BlockHash& hash, const BlockHash* parent,
                         std::span<const int32_t> tokens);

  // Drops one reference on each block of `table`. A keyed block left without references goes to
  // the LRU tail (evictable, still a hit); an unkeyed one is free. The table is walked from its
  // last block to its first, so a sequence's deeper blocks are evicted before its leading ones:
  // a child is useless without its parent, so evicting the parent first would waste the child
  // (vLLM does the same).
  void release(std::span<const int32_t> table);

  // One more reference on each block of `table`, which must all be held: a prefill server pins a
  // finished request's blocks this way until the decode server has pulled them (the request's own
  // references are dropped as usual; the pin keeps the bytes neither free nor evictable).
  void ref(std::span<const int32_t> table);

  // Drops every key (AllBlocksCleared): evictable blocks become free, referenced blocks stay
  // valid for their holders but are no longer hits. Counters are kept. No-op when caching is off.
  void reset_prefix_cache();

  int32_t n_total() const { return static_cast<int32_t>(blocks_.size()); }
  int32_t n_available() const { return static_cast<int32_t>(free_.size()) + n_evictable_; }
  int32_t n_referenced() const { return n_total() - n_available(); }
  int32_t n_cached() const { return static_cast<int32_t>(cached_.size()); }  // keyed blocks
  float usage() const {  // vLLM's kv_cache_usage_perc, 0..1
    return static_cast<float>(n_referenced()) / static_cast<float>(n_total());
  }
  uint64_t prefix_queries() const { return prefix_queries_; }  // tokens
  uint64_t prefix_hits() const { return prefix_hits_; }        // tokens
  int32_t block_size() const { return config_.block_size; }
  bool prefix_caching() const { return config_.prefix_caching; }

  int32_t ref_count(int32_t block) const { return blocks_.at(block).refs; }
  std::optional<BlockHash> key_of(int32_t block) const;
  std::optional<int32_t> lookup(const BlockHash& hash) const;  // no reference taken, no counting

  // Walks every structure and throws llmd::Error on the first broken invariant (O(n); for tests).
  void check_invariants() const;

 private:
  static constexpr int32_t kNone = -1;
  struct Block {
    int32_t refs = 0;
    bool keyed = false;
    bool in_lru = false;
    int32_t prev = kNone;  // LRU links, valid while in_lru
    int32_t next = kNone;
    BlockHash key;
  };

  void lru_push_back(int32_t b);
  void lru_unlink(int32_t b);
  Block& held(int32_t block, const char* what);

  BlockManagerConfig config_;
  KvEventSink* events_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  int32_t lru_head_ = kNone;   // least recently released: evicted first
  int32_t lru_tail_ = kNone;
  int32_t n_evictable_ = 0;
  std::unordered_map<BlockHash, int32_t, BlockHashHasher> cached_;
  uint64_t prefix_queries_ = 0;
  uint64_t prefix_hits_ = 0;
};

}  // namespace llmd::engine
