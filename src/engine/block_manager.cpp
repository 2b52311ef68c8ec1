#include "engine/block_manager.hpp"

#include "common/error.hpp"

namespace llmd::engine {

BlockManager::BlockManager(BlockManagerConfig config, KvEventSink* events)
    : config_(config), events_(events) {
  if (config_.n_blocks <= 0) fail("KV cache needs at least one block, got {}", config_.n_blocks);
  if (config_.block_size <= 0) fail("KV block size must be positive, got {}", config_.block_size);
  blocks_.resize(config_.n_blocks);
  free_.reserve(config_.n_blocks);
  // Lowest ids on top of the stack: a fresh pool hands out 0, 1, 2 ... (readable in logs).
  for (int32_t b = config_.n_blocks - 1; b >= 0; --b) free_.push_back(b);
  if (config_.prefix_caching) cached_.reserve(config_.n_blocks);
}

int32_t BlockManager::acquire_cached_prefix(std::span<const BlockHash> hashes, std::vector<int32_t>& table,
                                            int64_t query_tokens) {
  if (!config_.prefix_caching) return 0;
  int32_t n = 0;
  for (const BlockHash& h : hashes) {
    const auto it = cached_.find(h);
    if (it == cached_.end()) break;
    const int32_t b = it->second;
    Block& blk = blocks_[b];
    if (blk.refs == 0) lru_unlink(b);
    ++blk.refs;
    table.push_back(b);
    ++n;
  }
  const auto bs = static_cast<uint64_t>(config_.block_size);
  prefix_queries_ += query_tokens >= 0 ? static_cast<uint64_t>(query_tokens) : hashes.size() * bs;
  prefix_hits_ += static_cast<uint64_t>(n) * bs;
  return n;
}

std::optional<int32_t> BlockManager::allocate() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (lru_head_ != kNone) {
    b = lru_head_;
    lru_unlink(b);
    Block& blk = blocks_[b];
    cached_.erase(blk.key);
    blk.keyed = false;
    if (events_) events_->block_removed(std::span<const BlockHash>(&blk.key, 1));
  } else {
    return std::nullopt;
  }
  blocks_[b].refs = 1;
  return b;
}

void BlockManager::commit_full_block(int32_t block, const BlockHash& hash, const BlockHash* parent,
                                     std::span<const int32_t> tokens) {
  Block& blk = held(block, "committed");
  if (tokens.size() != static_cast<size_t>(config_.block_size)) {
    fail("KV block {} committed with {} tokens, block size is {}", block, tokens.size(), config_.block_size);
  }
  if (!config_.prefix_caching) return;
  if (blk.keyed) {
    if (blk.key == hash) return;
    fail("KV block {} committed as {} but already holds {}", block, hash, blk.key);
  }
  if (!cached_.emplace(hash, block).second) return;  // another block holds this prefix: keep it
  blk.keyed = true;
  blk.key = hash;
  if (events_)
    events_->block_stored(std::span<const BlockHash>(&blk.key, 1), parent, tokens, config_.block_size);
}

void BlockManager::ref(std::span<const int32_t> table) {
  for (const int32_t b : table) held(b, "pinned");  // all checked before any changes
  for (const int32_t b : table) ++blocks_[b].refs;
}

void BlockManager::release(std::span<const int32_t> table) {
  for (auto it = table.rbegin(); it != table.rend(); ++it) {
    const int32_t b = *it;
    Block& blk = held(b, "released");
    if (--blk.refs > 0) continue;
    if (blk.keyed) {
      lru_push_back(b);
    } else {
      free_.push_back(b);
    }
  }
}

void BlockManager::reset_prefix_cache() {
  if (!config_.prefix_caching) return;  // nothing is keyed, and a plain allocator sends no events
  for (const auto& [hash, b] : cached_) {
    Block& blk = blocks_[b];
    blk.keyed = false;
    if (blk.in_lru) {
      lru_unlink(b);
      free_.push_back(b);
    }
  }
  cached_.clear();
  if (events_) events_->all_blocks_cleared();
}

std::optional<BlockHash> BlockManager::key_of(int32_t block) const {
  const Block& blk = blocks_.at(block);
  if (!blk.keyed) return std::nullopt;
  return blk.key;
}

std::optional<int32_t> BlockManager::lookup(const BlockHash& hash) const {
  const auto it = cached_.find(hash);
  if (it == cached_.end()) return std::nullopt;
  return it->second;
}

void BlockManager::lru_push_back(int32_t b) {
  Block& blk = blocks_[b];
  blk.in_lru = true;
  blk.prev = lru_tail_;
  blk.next = kNone;
  if (lru_tail_ != kNone) {
    blocks_[lru_tail_].next = b;
  } else {
    lru_head_ = b;
  }
  lru_tail_ = b;
  ++n_evictable_;
}

void BlockManager::lru_unlink(int32_t b) {
  Block& blk = blocks_[b];
  if (blk.prev != kNone) {
    blocks_[blk.prev].next = blk.next;
  } else {
    lru_head_ = blk.next;
  }
  if (blk.next != kNone) {
    blocks_[blk.next].prev = blk.prev;
  } else {
    lru_tail_ = blk.prev;
  }
  blk.in_lru = false;
  blk.prev = blk.next = kNone;
  --n_evictable_;
}

BlockManager::Block& BlockManager::held(int32_t block, const char* what) {
  if (block < 0 || block >= n_total()) fail("KV block {} {}: out of range [0, {})", block, what, n_total());
  Block& blk = blocks_[block];
  if (blk.refs <= 0) fail("KV block {} {} while not held", block, what);
  return blk;
}

void BlockManager::check_invariants() const {
  const int32_t n = n_total();
  std::vector<uint8_t> on_free(n, 0);
  for (int32_t b : free_) {
    if (b < 0 || b >= n) fail("free list holds out-of-range block {}", b);
    if (on_free[b]++) fail("block {} is on the free list twice", b);
    const Block& blk = blocks_[b];
    if (blk.refs != 0) fail("free block {} has {} references", b, blk.refs);
    if (blk.keyed) fail("free block {} holds key {}", b, blk.key);
    if (blk.in_lru) fail("free block {} is also in the LRU", b);
  }
  int32_t n_lru = 0;
  int32_t prev = kNone;
  for (int32_t b = lru_head_; b != kNone; b = blocks_[b].next) {
    if (++n_lru > n) fail("LRU list has a cycle");
    const Block& blk = blocks_[b];
    if (!blk.in_lru) fail("block {} linked in the LRU but not marked", b);
    if (blk.prev != prev) fail("block {} has a broken LRU back link", b);
    if (blk.refs != 0) fail("evictable block {} has {} references", b, blk.refs);
    if (!blk.keyed) fail("evictable block {} has no key", b);
    prev = b;
  }
  if (prev != lru_tail_) fail("LRU tail is {}, list ends at {}", lru_tail_, prev);
  if (n_lru != n_evictable_) fail("LRU holds {} blocks, counted {}", n_lru, n_evictable_);
  int32_t n_keyed = 0;
  for (int32_t b = 0; b < n; ++b) {
    const Block& blk = blocks_[b];
    if (blk.refs < 0) fail("block {} has {} references", b, blk.refs);
    if (blk.refs == 0 && !on_free[b] && !blk.in_lru)
      fail("block {} is unreferenced but neither free nor evictable", b);
    if (blk.in_lru && on_free[b]) fail("block {} is both free and evictable", b);
    if (blk.keyed) {
      ++n_keyed;
      const auto it = cached_.find(blk.key);
      if (it == cached_.end() || it->second != b)
        fail("block {} holds key {} that maps elsewhere", b, blk.key);
    }
  }
  if (n_keyed != n_cached()) fail("{} keyed blocks but {} cached keys", n_keyed, n_cached());
  if (!config_.prefix_caching && n_keyed != 0) fail("prefix caching is off but {} blocks are keyed", n_keyed);
}

}  // namespace llmd::engine
