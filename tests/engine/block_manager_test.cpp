#include "engine/block_manager.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "common/error.hpp"

namespace llmd::engine {
namespace {

struct RecordedEvent {
  enum Kind { kStored, kRemoved, kCleared } kind;
  std::vector<BlockHash> hashes;
  std::optional<BlockHash> parent;
  std::vector<int32_t> tokens;
  int32_t block_size = 0;
};

class RecordingSink : public KvEventSink {
 public:
  void block_stored(std::span<const BlockHash> hashes, const BlockHash* parent,
                    std::span<const int32_t> token_ids, int32_t block_size) override {
    events.push_back({RecordedEvent::kStored,
                      {hashes.begin(), hashes.end()},
                      parent ? std::optional(*parent) : std::nullopt,
                      {token_ids.begin(), token_ids.end()},
                      block_size});
  }
  void block_removed(std::span<const BlockHash> hashes) override {
    events.push_back({RecordedEvent::kRemoved, {hashes.begin(), hashes.end()}, std::nullopt, {}, 0});
  }
  void all_blocks_cleared() override { events.push_back({RecordedEvent::kCleared, {}, std::nullopt, {}, 0}); }
  std::vector<RecordedEvent> events;
};

constexpr int32_t kBs = 4;

std::vector<int32_t> tokens(int32_t first, int32_t n) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

// Runs a "prefill" of `toks` the way the engine does: reuse the cached prefix, allocate the rest,
// commit every full block. Returns the block table.
std::vector<int32_t> prefill(BlockManager& m, const std::vector<int32_t>& toks, const BlockHash& root,
                             int32_t* hits = nullptr) {
  std::vector<BlockHash> hs;
  hash_blocks(root, toks, m.block_size(), hs);
  std::vector<int32_t> table;
  const int32_t n_hit = m.acquire_cached_prefix(hs, table, static_cast<int64_t>(toks.size()));
  if (hits) *hits = n_hit;
  const int32_t n_blocks = static_cast<int32_t>((toks.size() + m.block_size() - 1) / m.block_size());
  for (int32_t i = n_hit; i < n_blocks; ++i) {
    auto b = m.allocate();
    if (!b) throw Error("out of blocks");
    table.push_back(*b);
  }
  for (int32_t i = n_hit; i < static_cast<int32_t>(hs.size()); ++i) {
    m.commit_full_block(table[i], hs[i], i ? &hs[i - 1] : nullptr,
                        std::span(toks).subspan(size_t(i) * m.block_size(), m.block_size()));
  }
  return table;
}

const BlockHash kRoot = root_hash("test-model", "");

TEST(BlockManager, ReusesPrefixAfterRelease) {
  RecordingSink sink;
  BlockManager m({.n_blocks = 8, .block_size = kBs}, &sink);
  const auto toks = tokens(0, 10);  // 2 full blocks + 2 tokens
  const auto t1 = prefill(m, toks, kRoot);
  ASSERT_EQ(t1.size(), 3u);
  ASSERT_EQ(sink.events.size(), 2u);
  EXPECT_EQ(sink.events[0].kind, RecordedEvent::kStored);
  EXPECT_FALSE(sink.events[0].parent);
  EXPECT_EQ(sink.events[0].tokens, tokens(0, 4));
  EXPECT_EQ(sink.events[0].block_size, kBs);
  EXPECT_EQ(sink.events[1].parent, sink.events[0].hashes[0]);
  EXPECT_EQ(m.n_cached(), 2);
  m.release(t1);
  EXPECT_EQ(m.n_available(), 8);
  EXPECT_EQ(m.n_referenced(), 0);

  int32_t hits = 0;
  const auto t2 = prefill(m, tokens(0, 12), kRoot, &hits);
  EXPECT_EQ(hits, 2);
  EXPECT_EQ(t2[0], t1[0]);
  EXPECT_EQ(t2[1], t1[1]);
  EXPECT_EQ(sink.events.size(), 3u);  // only the third block is new
  EXPECT_EQ(sink.events[2].parent, sink.events[1].hashes[0]);
  m.check_invariants();
}

TEST(BlockManager, DifferentSaltMisses) {
  BlockManager m({.n_blocks = 8, .block_size = kBs});
  m.release(prefill(m, tokens(0, 8), root_hash("test-model", "a")));
  int32_t hits = -1;
  m.release(prefill(m, tokens(0, 8), root_hash("test-model", "b"), &hits));
  EXPECT_EQ(hits, 0);
}

TEST(BlockManager, EvictsLeastRecentlyReleasedWithEvents) {
  RecordingSink sink;
  BlockManager m({.n_blocks = 4, .block_size = kBs}, &sink);
  const auto a = prefill(m, tokens(0, 8), kRoot);    // blocks a0 a1
  const auto b = prefill(m, tokens(100, 8), kRoot);  // blocks b0 b1
  std::vector<BlockHash> ha, hb;
  hash_blocks(kRoot, tokens(0, 8), kBs, ha);
  hash_blocks(kRoot, tokens(100, 8), kBs, hb);
  m.release(a);  // LRU: a1 a0 (deeper block first)
  m.release(b);  // LRU: a1 a0 b1 b0
  EXPECT_EQ(m.n_available(), 4);
  sink.events.clear();

  const std::vector<BlockHash> expect_order = {ha[1], ha[0], hb[1], hb[0]};
  for (int i = 0; i < 4; ++i) {
    auto blk = m.allocate();
    ASSERT_TRUE(blk);
    ASSERT_EQ(sink.events.size(), size_t(i + 1));
    EXPECT_EQ(sink.events[i].kind, RecordedEvent::kRemoved);
    ASSERT_EQ(sink.events[i].hashes.size(), 1u);
    EXPECT_EQ(sink.events[i].hashes[0], expect_order[i]) << i;
    EXPECT_FALSE(m.lookup(expect_order[i]));
  }
  EXPECT_FALSE(m.allocate());
  EXPECT_EQ(m.n_cached(), 0);
  m.check_invariants();
}

TEST(BlockManager, HitMovesBlockOutOfLruAndBackToTail) {
  BlockManager m({.n_blocks = 3, .block_size = kBs});
  const auto a = prefill(m, tokens(0, 4), kRoot);
  const auto b = prefill(m, tokens(50, 4), kRoot);
  m.release(a);
  m.release(b);  // LRU: a b
  // Touch a: it leaves the LRU and comes back at the tail when released: LRU b a.
  m.release(prefill(m, tokens(0, 4), kRoot));
  EXPECT_EQ(*m.allocate(), 2);  // the never-used block goes first
  EXPECT_EQ(*m.allocate(), b[0]);
  EXPECT_EQ(*m.allocate(), a[0]);
}

TEST(BlockManager, SamePrefixComputedTwiceConcurrently) {
  RecordingSink sink;
  BlockManager m({.n_blocks = 8, .block_size = kBs}, &sink);
  const auto toks = tokens(0, 4);
  std::vector<BlockHash> hs;
  hash_blocks(kRoot, toks, kBs, hs);
  // Both requests miss (neither has committed yet), both compute the block.
  std::vector<int32_t> t1, t2;
  EXPECT_EQ(m.acquire_cached_prefix(hs, t1), 0);
  EXPECT_EQ(m.acquire_cached_prefix(hs, t2), 0);
  t1.push_back(*m.allocate());
  t2.push_back(*m.allocate());
  m.commit_full_block(t1[0], hs[0], nullptr, toks);
  m.commit_full_block(t2[0], hs[0], nullptr, toks);
  m.commit_full_block(t1[0], hs[0], nullptr, toks);  // a repeat commit is a no-op
  EXPECT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(m.lookup(hs[0]), t1[0]);
  EXPECT_FALSE(m.key_of(t2[0]));
  m.check_invariants();
  m.release(t2);  // unkeyed: plain free, no event
  m.release(t1);  // keyed: evictable
  EXPECT_EQ(m.n_available(), 8);
  EXPECT_EQ(m.n_cached(), 1);
  EXPECT_EQ(sink.events.size(), 1u);
  m.check_invariants();
}

TEST(BlockManager, SharedBlocksAreRefCounted) {
  BlockManager m({.n_blocks = 8, .block_size = kBs});
  const auto t1 = prefill(m, tokens(0, 9), kRoot);  // 2 full + 1 partial
  int32_t hits = 0;
  const auto t2 = prefill(m, tokens(0, 9), kRoot, &hits);  // shares the 2 full ones while t1 runs
  EXPECT_EQ(hits, 2);
  EXPECT_EQ(m.ref_count(t1[0]), 2);
  EXPECT_EQ(m.ref_count(t1[1]), 2);
  EXPECT_NE(t1[2], t2[2]);  // partial blocks are private
  EXPECT_EQ(m.n_referenced(), 4);
  m.release(t1);
  EXPECT_EQ(m.ref_count(t2[0]), 1);
  EXPECT_EQ(m.n_referenced(), 3);  // t1's private block is free, the shared ones still held
  m.check_invariants();
  m.release(t2);
  EXPECT_EQ(m.n_referenced(), 0);
  EXPECT_EQ(m.n_cached(), 2);
  m.check_invariants();
}

TEST(BlockManager, APinnedRequestsBlocksOutliveItAndAreHitsOnceUnpinned) {
  BlockManager m({.n_blocks = 4, .block_size = kBs});
  const auto toks = tokens(0, 2 * kBs);
  const auto table = prefill(m, toks, kRoot);
  m.ref(table);                   // pinned for a decode server to pull
  m.release(table);               // the request itself is finished
  EXPECT_EQ(m.n_available(), 2);  // neither free nor evictable: nothing may overwrite them
  std::vector<int32_t> others;
  while (auto b = m.allocate()) others.push_back(*b);
  EXPECT_EQ(others.size(), 2u);
  m.check_invariants();
  m.release(others);
  m.release(table);  // unpinned: back to the prefix cache, still a hit
  int32_t hits = 0;
  prefill(m, toks, kRoot, &hits);
  EXPECT_EQ(hits, 2);
  m.check_invariants();
  const std::vector<int32_t> not_held{others[0]};
  EXPECT_THROW(m.ref(not_held), Error);
}

TEST(BlockManager, ExhaustionAndMisuse) {
  BlockManager m({.n_blocks = 2, .block_size = kBs});
  const auto a = *m.allocate();
  const auto b = *m.allocate();
  EXPECT_FALSE(m.allocate());
  EXPECT_FLOAT_EQ(m.usage(), 1.0f);
  const std::vector<int32_t> ta = {a};
  m.release(ta);
  EXPECT_THROW(m.release(ta), Error);                                                     // double release
  EXPECT_THROW(m.commit_full_block(a, BlockHash{1, 1}, nullptr, tokens(0, kBs)), Error);  // not held
  EXPECT_THROW(m.commit_full_block(b, BlockHash{1, 1}, nullptr, tokens(0, kBs - 1)), Error);  // not full
  m.commit_full_block(b, BlockHash{1, 1}, nullptr, tokens(0, kBs));
  EXPECT_THROW(m.commit_full_block(b, BlockHash{2, 2}, nullptr, tokens(0, kBs)), Error);  // rekeyed
  EXPECT_THROW(BlockManager({.n_blocks = 0}), Error);
  EXPECT_THROW(BlockManager({.n_blocks = 4, .block_size = 0}), Error);
}

TEST(BlockManager, UsageAndPrefixMetrics) {
  BlockManager m({.n_blocks = 10, .block_size = kBs});
  EXPECT_FLOAT_EQ(m.usage(), 0.0f);
  const auto t1 = prefill(m, tokens(0, 10), kRoot);  // 3 blocks, 0 hits of 10 tokens
  EXPECT_FLOAT_EQ(m.usage(), 0.3f);
  EXPECT_EQ(m.prefix_queries(), 10u);
  EXPECT_EQ(m.prefix_hits(), 0u);
  m.release(t1);
  EXPECT_FLOAT_EQ(m.usage(), 0.0f);                  // cached but unreferenced blocks are not usage
  const auto t2 = prefill(m, tokens(0, 13), kRoot);  // hits 2 blocks = 8 tokens of 13
  EXPECT_EQ(m.prefix_queries(), 23u);
  EXPECT_EQ(m.prefix_hits(), 8u);
  EXPECT_FLOAT_EQ(m.usage(), 0.4f);
  // Without query_tokens the query is counted in full blocks.
  std::vector<BlockHash> hs;
  hash_blocks(kRoot, tokens(0, 8), kBs, hs);
  std::vector<int32_t> t3;
  EXPECT_EQ(m.acquire_cached_prefix(hs, t3), 2);
  EXPECT_EQ(m.prefix_queries(), 31u);
  EXPECT_EQ(m.prefix_hits(), 16u);
  m.release(t3);
  m.release(t2);
}

TEST(BlockManager, ResetPrefixCacheKeepsReferencedBlocks) {
  RecordingSink sink;
  BlockManager m({.n_blocks = 6, .block_size = kBs}, &sink);
  const auto held = prefill(m, tokens(0, 8), kRoot);
  m.release(prefill(m, tokens(100, 8), kRoot));
  EXPECT_EQ(m.n_cached(), 4);
  sink.events.clear();
  m.reset_prefix_cache();
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(sink.events[0].kind, RecordedEvent::kCleared);
  EXPECT_EQ(m.n_cached(), 0);
  EXPECT_EQ(m.ref_count(held[0]), 1);
  EXPECT_EQ(m.n_available(), 4);
  int32_t hits = -1;
  m.release(prefill(m, tokens(0, 8), kRoot, &hits));
  EXPECT_EQ(hits, 0);
  m.release(held);  // unkeyed now: plain free, no events
  m.check_invariants();
  EXPECT_EQ(m.n_available(), 6);
}

TEST(BlockManager, WithoutPrefixCachingIsAPlainAllocator) {
  RecordingSink sink;
  BlockManager m({.n_blocks = 4, .block_size = kBs, .prefix_caching = false}, &sink);
  const auto t1 = prefill(m, tokens(0, 8), kRoot);
  m.release(t1);
  int32_t hits = -1;
  const auto t2 = prefill(m, tokens(0, 8), kRoot, &hits);
  EXPECT_EQ(hits, 0);
  EXPECT_TRUE(sink.events.empty());
  EXPECT_EQ(m.n_cached(), 0);
  EXPECT_EQ(m.prefix_queries(), 0u);
  const auto t3 = prefill(m, tokens(0, 8), kRoot);
  EXPECT_FALSE(m.allocate());
  m.release(t2);
  m.release(t3);
  EXPECT_EQ(m.n_available(), 4);
  m.check_invariants();
}

// Random prefills, decodes and releases against a simple model of what must hold: the sink's view
// of the cache (stored minus removed) equals the manager's keys, every table's block is held, no
// block is in two states, and a cached key never names two blocks.
TEST(BlockManager, RandomizedAgainstModel) {
  for (const bool caching : {true, false}) {
    RecordingSink sink;
    BlockManager m({.n_blocks = 48, .block_size = kBs, .prefix_caching = caching}, &sink);
    std::mt19937 rng(caching ? 1234 : 99);
    struct Seq {
      std::vector<int32_t> toks, table;
      std::vector<BlockHash> hs;
    };
    std::vector<Seq> live;
    std::set<std::pair<uint64_t, uint64_t>> model_cache;  // from events
    size_t seen_events = 0;
    auto sync_events = [&] {
      for (; seen_events < sink.events.size(); ++seen_events) {
        const auto& e = sink.events[seen_events];
        if (e.kind == RecordedEvent::kStored) {
          for (const auto& h : e.hashes) EXPECT_TRUE(model_cache.insert({h.lo, h.hi}).second);
        } else if (e.kind == RecordedEvent::kRemoved) {
          for (const auto& h : e.hashes) EXPECT_EQ(model_cache.erase({h.lo, h.hi}), 1u);
        } else {
          model_cache.clear();
        }
      }
    };
    for (int step = 0; step < 20000; ++step) {
      const int op = static_cast<int>(rng() % 10);
      if (op < 4) {  // a new request sharing one of a few prefixes
        const int32_t family = static_cast<int32_t>(rng() % 4);
        const int32_t len = 1 + static_cast<int32_t>(rng() % 20);
        std::vector<int32_t> toks(len);
        for (int32_t i = 0; i < len; ++i)
          toks[i] = i < 12 ? family * 1000 + i : static_cast<int32_t>(rng() % 50);
        const int32_t needed = (len + kBs - 1) / kBs;
        if (m.n_available() < needed) continue;  // admission control, as the scheduler does
        Seq s{toks, {}, {}};
        try {
          s.table = prefill(m, toks, kRoot);
        } catch (const Error&) {
          FAIL() << "admission said " << needed << " blocks were available";
        }
        hash_blocks(kRoot, toks, kBs, s.hs);
        live.push_back(std::move(s));
      } else if (op < 7 && !live.empty()) {  // decode one token
        Seq& s = live[rng() % live.size()];
        s.toks.push_back(static_cast<int32_t>(rng() % 50));
        const size_t len = s.toks.size();
        if ((len - 1) % kBs == 0) {  // needs a new block
          auto b = m.allocate();
          if (!b) {
            s.toks.pop_back();
            continue;
          }
          s.table.push_back(*b);
        }
        if (len % kBs == 0) {
          const size_t i = len / kBs - 1;
          extend_block_hashes(kRoot, s.toks, kBs, s.hs);
          m.commit_full_block(s.table[i], s.hs[i], i ? &s.hs[i - 1] : nullptr,
                              std::span(s.toks).subspan(i * kBs, kBs));
        }
      } else if (op < 9 && !live.empty()) {  // finish
        const size_t k = rng() % live.size();
        m.release(live[k].table);
        live.erase(live.begin() + static_cast<ptrdiff_t>(k));
      } else if (rng() % 50 == 0) {
        m.reset_prefix_cache();
      }
      sync_events();
      if (step % 50 == 0) {
        m.check_invariants();
        std::map<int32_t, int32_t> refs;
        for (const auto& s : live) {
          for (int32_t b : s.table) ++refs[b];
        }
        int32_t n_ref = 0;
        for (int32_t b = 0; b < m.n_total(); ++b) {
          EXPECT_EQ(m.ref_count(b), refs.count(b) ? refs[b] : 0) << "block " << b;
          n_ref += m.ref_count(b) > 0;
        }
        EXPECT_EQ(m.n_referenced(), n_ref);
        EXPECT_EQ(static_cast<size_t>(m.n_cached()), model_cache.size());
        for (const auto& [lo, hi] : model_cache) {
          const auto b = m.lookup(BlockHash{lo, hi});
          ASSERT_TRUE(b);
          EXPECT_EQ(m.key_of(*b), (BlockHash{lo, hi}));
        }
        // Each live sequence's keyed blocks hold the keys of its own tokens.
        for (const auto& s : live) {
          for (size_t i = 0; i < s.hs.size() && i < s.table.size(); ++i) {
            if (auto k = m.key_of(s.table[i])) {
              EXPECT_EQ(*k, s.hs[i]);
            }
          }
        }
      }
    }
    for (const auto& s : live) m.release(s.table);
    m.check_invariants();
    EXPECT_EQ(m.n_available(), m.n_total());
    if (caching) {  // the run must have exercised hits and evictions to mean anything
      EXPECT_GT(m.prefix_hits(), 0u);
      EXPECT_TRUE(std::any_of(sink.events.begin(), sink.events.end(),
                              [](const RecordedEvent& e) { return e.kind == RecordedEvent::kRemoved; }));
    } else {
      EXPECT_TRUE(sink.events.empty());
    }
  }
}

}  // namespace
}  // namespace llmd::engine
