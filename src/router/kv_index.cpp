#include "router/kv_index.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstring>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "common/error.hpp"

namespace llmd::router {

namespace {

// --- holder words: endpoint id << 4 | media mask (bit m = Medium m) ---

constexpr uint32_t kMediaBits = 4;
constexpr uint32_t kMaskAll = (1u << kMediaBits) - 1;
// Ids from here up cannot be held (the id field has 28 bits, and its largest value is the tag's).
constexpr EndpointId kEndpointLimit = (1u << (32 - kMediaBits)) - 1;
// A slot whose first word has an empty mask holds no endpoint inline: 0 marks an empty slot, this
// marks one whose holders live in the spill pool (the second word is the pool reference).
constexpr uint32_t kSpillTag = kEndpointLimit << kMediaBits;

inline uint32_t holder_word(EndpointId ep, uint32_t mask) {
  return ep << kMediaBits | mask;
}
inline EndpointId ep_of(uint32_t h) {
  return h >> kMediaBits;
}
inline uint32_t mask_of(uint32_t h) {
  return h & kMaskAll;
}

// Keys are hash outputs already, but a test's or a hostile publisher's keys need not be: mixing
// keeps shards and probe sequences uniform whatever the keys (murmur3's finalizer).
inline uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

struct Slot {
  uint64_t key;
  uint32_t a;  // 0: empty; kSpillTag: spilled; else the holder with the lowest endpoint id
  uint32_t b;  // second holder (0: none), or the spill reference
};
static_assert(sizeof(Slot) == 16);

// A holder set's fingerprint: the sum of its words' mixes, so it is kept up to date word by word
// in O(1) whatever the order. longest_prefix compares fingerprints instead of whole lists to see
// that a key has the same holders as the previous one (a false match needs a 64-bit collision).
inline uint64_t word_fp(uint32_t h) {
  return mix(h);
}

// --- spill pool: holder lists of blocks on more than two endpoints ---
//
// Chunks of kHeader + (3 << c) words (c = size class): the count, the fingerprint (two words),
// then up to 3 << c holder words sorted by endpoint id. A reference is class << 27 | chunk index.
// Free chunks form a list through their word 0, so freeing costs nothing and the memory goes to
// the next block that needs a chunk of that class.
class SpillPool {
 public:
  static constexpr uint32_t kHeader = 3;
  static constexpr uint32_t kClassBits = 5;
  static constexpr uint32_t kIndexBits = 32 - kClassBits;
  static constexpr uint32_t kClasses = 28;  // 3 << 27 holders: every possible endpoint
  static constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

  static uint32_t capacity_of(uint32_t cls) { return 3u << cls; }
  static uint32_t words_of(uint32_t cls) { return kHeader + capacity_of(cls); }
  static uint32_t cls_of(uint32_t ref) { return ref >> kIndexBits; }
  // The smallest class whose chunk holds n holders.
  static uint32_t class_for(uint32_t n) {
    uint32_t c = 0;
    while (capacity_of(c) < n) ++c;
    return c;
  }

  SpillPool() { free_.fill(kNone); }

  uint32_t* chunk(uint32_t ref) {
    const uint32_t c = cls_of(ref);
    return words_[c].data() + static_cast<size_t>(ref & ((1u << kIndexBits) - 1)) * words_of(c);
  }
  const uint32_t* chunk(uint32_t ref) const { return const_cast<SpillPool*>(this)->chunk(ref); }

  uint32_t allocate(uint32_t cls) {
    auto& w = words_[cls];
    uint32_t index;
    if (free_[cls] != kNone) {
      index = free_[cls];
      free_[cls] = w[static_cast<size_t>(index) * words_of(cls)];
    } else {
      index = static_cast<uint32_t>(w.size() / words_of(cls));
      if (index >> kIndexBits) fail("KV index: spill pool class {} is full", cls);
      // Grow by half rather than vector's doubling: this memory is most of the index beyond slots.
      if (w.size() + words_of(cls) > w.capacity()) w.reserve(std::max<size_t>(64, w.capacity() * 3 / 2));
      w.resize(w.size() + words_of(cls));
    }
    return cls << kIndexBits | index;
  }

  void release(uint32_t ref) {
    const uint32_t c = cls_of(ref);
    chunk(ref)[0] = free_[c];
    free_[c] = ref & ((1u << kIndexBits) - 1);
  }

  size_t bytes() const {
    size_t n = 0;
    for (const auto& w : words_) n += w.capacity() * sizeof(uint32_t);
    return n;
  }

  void clear() {
    for (auto& w : words_) std::vector<uint32_t>().swap(w);
    free_.fill(kNone);
  }

 private:
  std::array<std::vector<uint32_t>, kClasses> words_;
  std::array<uint32_t, kClasses> free_;
};

// A chunk's header and holders.
struct ChunkView {
  uint32_t* w;
  uint32_t count() const { return w[0]; }
  void set_count(uint32_t n) { w[0] = n; }
  uint64_t fp() const { return w[1] | static_cast<uint64_t>(w[2]) << 32; }
  void set_fp(uint64_t f) {
    w[1] = static_cast<uint32_t>(f);
    w[2] = static_cast<uint32_t>(f >> 32);
  }
  uint32_t* begin() const { return w + SpillPool::kHeader; }
  uint32_t* end() const { return begin() + count(); }
  // Rewrites one holder word, keeping the fingerprint.
  void set(uint32_t* pos, uint32_t h) {
    set_fp(fp() - word_fp(*pos) + word_fp(h));
    *pos = h;
  }
};

// What longest_prefix compares between consecutive keys: n holders and, for n <= 2, the inline
// words themselves (exact), else the spilled list's fingerprint.
struct HolderSig {
  uint32_t n = 0;
  uint64_t v = 0;
  friend bool operator==(const HolderSig&, const HolderSig&) = default;
};

// --- one shard: a linear-probing table with backward-shift deletion (no tombstones, so churn
// never degrades probes) and its spill pool ---

constexpr size_t kMinCapacity = 16;
// Grow by 1.5x past 80% load: the load stays within 53..80%, i.e. 20..30 bytes of slot per block,
// and a successful probe touches ~3 slots (one cache line, usually).
constexpr size_t kMaxLoadPercent = 80;
constexpr size_t kShrinkLoadPercent = 20;

struct alignas(64) Shard {
  mutable std::shared_mutex mu;
  std::unique_ptr<Slot[]> slots;
  size_t cap = 0;
  size_t used = 0;     // occupied slots (blocks)
  size_t entries = 0;  // (block, endpoint) pairs
  SpillPool pool;
  // Copies of slots/cap that readers load without the lock, only to prefetch a later key's slot
  // (a prefetch of a stale address is harmless: it never faults).
  std::atomic<const Slot*> hint_slots{nullptr};
  std::atomic<size_t> hint_cap{0};

  static size_t home(uint64_t mixed, size_t cap) {
    return static_cast<size_t>((static_cast<unsigned __int128>(mixed) * cap) >> 64);
  }
  size_t home(uint64_t mixed) const { return home(mixed, cap); }

  void set_table(std::unique_ptr<Slot[]> table, size_t new_cap) {
    slots = std::move(table);
    cap = new_cap;
    hint_slots.store(slots.get(), std::memory_order_relaxed);
    hint_cap.store(cap, std::memory_order_relaxed);
  }
  size_t next(size_t i) const { return i + 1 == cap ? 0 : i + 1; }

  // Index of the key's slot, or cap when absent.
  size_t find(uint64_t key, uint64_t mixed) const {
    if (cap == 0) return cap;
    for (size_t i = home(mixed);; i = next(i)) {
      const Slot& s = slots[i];
      if (s.a == 0) return cap;
      if (s.key == key) return i;
    }
  }

  void rehash(size_t new_cap) {
    std::unique_ptr<Slot[]> old = std::move(slots);
    const size_t old_cap = cap;
    set_table(std::make_unique<Slot[]>(new_cap), new_cap);  // value-initialised: every slot empty
    for (size_t i = 0; i < old_cap; ++i) {
      if (old[i].a == 0) continue;
      size_t j = home(mix(old[i].key));
      while (slots[j].a != 0) j = next(j);
      slots[j] = old[i];
    }
  }

  // The key's slot; a new one has no holder yet (a == 0) until the caller adds one.
  Slot& find_or_insert(uint64_t key, uint64_t mixed) {
    if ((used + 1) * 100 > cap * kMaxLoadPercent) rehash(std::max(kMinCapacity, cap * 3 / 2));
    size_t i = home(mixed);
    for (;; i = next(i)) {
      if (slots[i].a == 0) break;
      if (slots[i].key == key) return slots[i];
    }
    ++used;
    slots[i].key = key;
    return slots[i];
  }

  // Removes slot i, shifting later members of its cluster back so no probe sequence is broken.
  void erase_at(size_t i) {
    for (size_t j = next(i);; j = next(j)) {
      if (slots[j].a == 0) break;
      const size_t k = home(mix(slots[j].key));
      // slots[j] may fill the hole at i unless its home lies cyclically in (i, j].
      const bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
      if (stays) continue;
      slots[i] = slots[j];
      i = j;
    }
    slots[i] = Slot{};
    --used;
  }

  void maybe_shrink() {
    if (cap > kMinCapacity && used * 100 < cap * kShrinkLoadPercent) rehash(std::max(kMinCapacity, used * 2));
  }

  ChunkView chunk_of(const Slot& s) const { return {const_cast<SpillPool&>(pool).chunk(s.b)}; }

  HolderSig signature(const Slot& s) const {
    if (s.a == kSpillTag) {
      const ChunkView c = chunk_of(s);
      return {c.count(), c.fp()};
    }
    return {s.b == 0 ? 1u : 2u, static_cast<uint64_t>(s.a) << 32 | s.b};
  }

  // Calls f(holder word) for each holder of the slot, in endpoint order.
  template <class F>
  void for_each_holder(const Slot& s, F&& f) const {
    if (s.a == kSpillTag) {
      const ChunkView c = chunk_of(s);
      for (const uint32_t* h = c.begin(); h != c.end(); ++h) f(*h);
      return;
    }
    f(s.a);
    if (s.b != 0) f(s.b);
  }

  // Adds `bits` to ep's mask in the slot (a new holder when ep is not there yet).
  void add(Slot& s, EndpointId ep, uint32_t bits) {
    const uint32_t h = holder_word(ep, bits);
    if (s.a == 0) {  // a new slot
      s.a = h;
      s.b = 0;
      ++entries;
      return;
    }
    if (s.a != kSpillTag) {
      if (ep_of(s.a) == ep) {
        s.a |= bits;
        return;
      }
      if (s.b != 0 && ep_of(s.b) == ep) {
        s.b |= bits;
        return;
      }
      ++entries;
      if (s.b == 0) {
        if (ep < ep_of(s.a)) {
          s.b = s.a;
          s.a = h;
        } else {
          s.b = h;
        }
        return;
      }
      // A third endpoint: all three move to a chunk.
      const uint32_t ref = pool.allocate(0);
      ChunkView c{pool.chunk(ref)};
      std::array<uint32_t, 3> w = {s.a, s.b, h};
      std::sort(w.begin(), w.end());  // by endpoint id, the high bits
      c.set_count(3);
      c.set_fp(word_fp(w[0]) + word_fp(w[1]) + word_fp(w[2]));
      std::copy(w.begin(), w.end(), c.begin());
      s.a = kSpillTag;
      s.b = ref;
      return;
    }
    ChunkView c = chunk_of(s);
    uint32_t* pos = std::lower_bound(c.begin(), c.end(), holder_word(ep, 0));
    if (pos != c.end() && ep_of(*pos) == ep) {
      c.set(pos, *pos | bits);
      return;
    }
    ++entries;
    const uint32_t cls = SpillPool::cls_of(s.b);
    if (c.count() == SpillPool::capacity_of(cls)) {  // full: move to the next class
      const size_t at = static_cast<size_t>(pos - c.begin());
      const uint32_t ref = pool.allocate(cls + 1);  // grows only class cls + 1: c stays valid
      ChunkView d{pool.chunk(ref)};
      std::copy(c.w, c.w + SpillPool::kHeader + c.count(), d.w);
      pool.release(s.b);
      s.b = ref;
      c = d;
      pos = c.begin() + at;
    }
    std::copy_backward(pos, c.end(), c.end() + 1);
    *pos = h;
    c.set_count(c.count() + 1);
    c.set_fp(c.fp() + word_fp(h));
  }

  // Clears `bits` of ep's mask in slot i; drops the holder when its mask empties and the slot
  // when it has no holder left.
  void remove(size_t i, EndpointId ep, uint32_t bits) {
    Slot& s = slots[i];
    if (s.a != kSpillTag) {
      if (ep_of(s.a) == ep) {
        s.a &= ~bits;
        if (mask_of(s.a) != 0) return;
        --entries;
        if (s.b == 0) {
          erase_at(i);
        } else {
          s.a = s.b;
          s.b = 0;
        }
      } else if (s.b != 0 && ep_of(s.b) == ep) {
        s.b &= ~bits;
        if (mask_of(s.b) != 0) return;
        --entries;
        s.b = 0;
      }
      return;
    }
    ChunkView c = chunk_of(s);
    uint32_t* pos = std::lower_bound(c.begin(), c.end(), holder_word(ep, 0));
    if (pos == c.end() || ep_of(*pos) != ep) return;
    if (mask_of(*pos & ~bits) != 0) {
      c.set(pos, *pos & ~bits);
      return;
    }
    --entries;
    c.set_fp(c.fp() - word_fp(*pos));
    std::copy(pos + 1, c.end(), pos);
    c.set_count(c.count() - 1);
    const uint32_t n = c.count();
    if (n <= 2) {  // back inline
      const uint32_t ref = s.b;
      s.a = c.begin()[0];
      s.b = c.begin()[1];
      pool.release(ref);
      return;
    }
    const uint32_t cls = SpillPool::cls_of(s.b);
    if (cls > 0 && n * 4 <= SpillPool::capacity_of(cls)) {          // a quarter full: move down
      const uint32_t ref = pool.allocate(SpillPool::class_for(n));  // another class: c stays valid
      ChunkView d{pool.chunk(ref)};
      std::copy(c.w, c.w + SpillPool::kHeader + n, d.w);
      pool.release(s.b);
      s.b = ref;
    }
  }
};

// Per-thread scratch of longest_prefix, so a scheduling call allocates nothing in steady state.
struct PrefixScratch {
  std::vector<uint32_t> cand_of;  // by endpoint id: candidate index + 1, 0 when not a candidate
  std::vector<uint32_t> alive;    // by candidate: how many holder sets from the first held it
  std::vector<double> weight;     // by candidate: its weight since key since[c]
  std::vector<size_t> since;      // by candidate
  std::vector<size_t> set_start;  // by holder set: its first key
  std::vector<std::pair<size_t, size_t>> duplicates;    // (candidate, the earlier same endpoint)
  std::vector<std::pair<EndpointId, uint32_t>> sorted;  // candidates by id, for huge ids
};

// How many keys ahead longest_prefix prefetches slots: enough to cover a DRAM miss with the
// ~20 ns each key takes, few enough that a walk that ends early wastes little.
constexpr size_t kPrefetchAhead = 8;

constexpr uint32_t kNoCandidate = std::numeric_limits<uint32_t>::max();

// Candidate lookups through a dense table up to this id (4 MiB of table per scheduling thread);
// ids past it (not what an endpoint set hands out) take a binary search instead.
constexpr EndpointId kDenseCandidateIds = 1u << 20;

}  // namespace

Medium parse_medium(std::string_view name) {
  auto eq = [&](std::string_view want) {
    return name.size() == want.size() &&
           std::equal(name.begin(), name.end(), want.begin(),
                      [](char a, char b) { return (a >= 'a' && a <= 'z' ? a - 32 : a) == b; });
  };
  if (name.empty() || eq("GPU")) return Medium::kGpu;
  if (eq("CPU")) return Medium::kCpu;
  if (eq("DISK")) return Medium::kDisk;
  return Medium::kOther;
}

struct KvIndex::Impl {
  KvIndexConfig config;
  std::unique_ptr<Shard[]> shards;
  size_t n_shards = 0;
  std::array<double, 1u << kMediaBits> weight_of_mask{};  // the fastest medium's weight

  Shard& shard_of(uint64_t mixed) const { return shards[mixed & (n_shards - 1)]; }

  void prefetch(uint64_t mixed) const {
    const Shard& sh = shard_of(mixed);
    const Slot* t = sh.hint_slots.load(std::memory_order_relaxed);
    const size_t cap = sh.hint_cap.load(std::memory_order_relaxed);
    if (t != nullptr && cap != 0) __builtin_prefetch(t + Shard::home(mixed, cap));
  }

  template <class CandidateOf>
  void prefix(std::span<const uint64_t> keys, std::span<double> out, PrefixScratch& s,
              CandidateOf candidate_of) const;
};

KvIndex::KvIndex(KvIndexConfig config) : impl_(std::make_unique<Impl>()) {
  if (config.shards == 0 || !std::has_single_bit(config.shards))
    fail("KV index: shards must be a power of two, got {}", config.shards);
  impl_->config = config;
  impl_->n_shards = config.shards;
  impl_->shards = std::make_unique<Shard[]>(config.shards);
  for (uint32_t mask = 1; mask <= kMaskAll; ++mask) {
    double w = 0;
    for (uint32_t m = 0; m < kMediaBits; ++m)
      if (mask & (1u << m)) w = std::max(w, config.medium_weight[m]);
    impl_->weight_of_mask[mask] = w;
  }
}

KvIndex::~KvIndex() = default;

void KvIndex::stored(EndpointId ep, std::span<const uint64_t> keys, Medium medium) {
  if (ep >= kEndpointLimit) return;  // not representable
  const uint32_t bit = 1u << static_cast<uint32_t>(medium);
  for (uint64_t key : keys) {
    const uint64_t m = mix(key);
    Shard& sh = impl_->shard_of(m);
    std::unique_lock lock(sh.mu);
    sh.add(sh.find_or_insert(key, m), ep, bit);
  }
}

void KvIndex::removed(EndpointId ep, std::span<const uint64_t> keys, Medium medium) {
  if (ep >= kEndpointLimit) return;
  const uint32_t bit = 1u << static_cast<uint32_t>(medium);
  for (uint64_t key : keys) {
    const uint64_t m = mix(key);
    Shard& sh = impl_->shard_of(m);
    std::unique_lock lock(sh.mu);
    const size_t i = sh.find(key, m);
    if (i != sh.cap) sh.remove(i, ep, bit);
  }
}

void KvIndex::cleared(EndpointId ep) {
  if (ep >= kEndpointLimit) return;
  for (size_t si = 0; si < impl_->n_shards; ++si) {
    Shard& sh = impl_->shards[si];
    std::unique_lock lock(sh.mu);
    // A removal may shift a later slot into i, so i is looked at again after one (erase_at only
    // moves slots backwards into the hole: nothing unvisited moves behind the scan).
    for (size_t i = 0; i < sh.cap;) {
      const Slot& s = sh.slots[i];
      if (s.a == 0) {
        ++i;
        continue;
      }
      const bool erased_possible = s.a != kSpillTag && s.b == 0 && ep_of(s.a) == ep;
      sh.remove(i, ep, kMaskAll);
      if (!erased_possible) ++i;
    }
    sh.maybe_shrink();
    if (sh.used == 0) {  // give an emptied shard's memory back
      sh.set_table(nullptr, 0);
      sh.pool.clear();
    }
  }
}

template <class CandidateOf>
void KvIndex::Impl::prefix(std::span<const uint64_t> keys, std::span<double> out, PrefixScratch& s,
                           CandidateOf candidate_of) const {
  // Consecutive keys usually have exactly the same holders (a prefix is stored on the same
  // endpoints at once), so the walk only does work per candidate where the holder set changes:
  // sets are numbered g = 0, 1, ... in key order (set_start[g] = its first key), alive[c] = how
  // many consecutive sets from the first held c, and each candidate's score is settled lazily as
  // weight x (number of keys) whenever its weight changes and once at the end. A key thus costs
  // one lookup and a signature compare, plus one pass over its holders when its set is new.
  //
  // Raw pointers into the scratch: through the vectors, every store would make the compiler
  // reload them (they live in thread-local storage and may alias).
  uint32_t* const alive = s.alive.data();
  double* const weight = s.weight.data();
  size_t* const since = s.since.data();
  size_t* const set_start = s.set_start.data();
  double* const score = out.data();
  uint32_t gen = 0;                            // sets seen
  HolderSig prev;                              // n == 0: none yet
  std::array<uint64_t, kPrefetchAhead> ahead;  // mixed keys, by index modulo kPrefetchAhead
  const size_t n = keys.size();
  for (size_t j = 0; j < std::min(n, kPrefetchAhead); ++j) {
    ahead[j] = mix(keys[j]);
    prefetch(ahead[j]);
  }
  size_t stop = n;  // the first key not counted
  for (size_t j = 0; j < n; ++j) {
    const uint64_t m = ahead[j % kPrefetchAhead];
    if (j + kPrefetchAhead < n) {
      ahead[j % kPrefetchAhead] = mix(keys[j + kPrefetchAhead]);
      prefetch(ahead[j % kPrefetchAhead]);
    }
    const Shard& sh = shard_of(m);
    std::shared_lock lock(sh.mu);
    const size_t i = sh.find(keys[j], m);
    if (i == sh.cap) {
      stop = j;
      break;
    }
    const Slot& slot = sh.slots[i];
    const HolderSig sig = sh.signature(slot);
    if (sig == prev) continue;
    set_start[gen] = j;
    const uint32_t next = gen + 1;
    bool matched = false;
    sh.for_each_holder(slot, [&](uint32_t h) {
      const uint32_t c = candidate_of(ep_of(h));
      if (c == kNoCandidate || alive[c] != gen) return;
      alive[c] = next;
      matched = true;
      const double w = weight_of_mask[mask_of(h)];
      if (gen == 0) {
        weight[c] = w;
        since[c] = j;
      } else if (w != weight[c]) {
        score[c] += weight[c] * static_cast<double>(j - since[c]);
        weight[c] = w;
        since[c] = j;
      }
    });
    lock.unlock();
    if (!matched) {
      stop = j;
      break;
    }
    gen = next;
    prev = sig;
  }
  // A candidate in sets 0..a-1 held keys up to set a's first key, or up to `stop` when it was
  // in every set.
  for (size_t c = 0; c < out.size(); ++c) {
    const uint32_t a = alive[c];
    if (a == 0) continue;
    const size_t end = a == gen ? stop : set_start[a];
    score[c] += weight[c] * static_cast<double>(end - since[c]);
  }
}

void KvIndex::longest_prefix(std::span<const uint64_t> keys, std::span<const EndpointId> candidates,
                             std::span<double> out) const {
  if (out.size() != candidates.size())
    fail("KV index: longest_prefix given {} candidates but {} outputs", candidates.size(), out.size());
  std::fill(out.begin(), out.end(), 0.0);
  if (candidates.empty() || keys.empty()) return;
  thread_local PrefixScratch s;
  const size_t n = candidates.size();
  s.alive.assign(n, 0);
  s.weight.resize(n);
  s.since.resize(n);
  s.set_start.resize(keys.size());
  s.duplicates.clear();

  const EndpointId max_id = *std::max_element(candidates.begin(), candidates.end());
  if (max_id < kDenseCandidateIds) {
    if (s.cand_of.size() <= max_id) s.cand_of.resize(static_cast<size_t>(max_id) + 1, 0);
    for (size_t i = 0; i < n; ++i) {
      uint32_t& slot = s.cand_of[candidates[i]];
      if (slot != 0) {
        s.duplicates.emplace_back(i, slot - 1);
      } else {
        slot = static_cast<uint32_t>(i) + 1;
      }
    }
    const uint32_t* table = s.cand_of.data();
    const size_t table_size = s.cand_of.size();
    impl_->prefix(keys, out, s, [table, table_size](EndpointId ep) -> uint32_t {
      return ep < table_size ? table[ep] - 1 : kNoCandidate;  // 0 - 1 wraps to kNoCandidate
    });
    for (EndpointId ep : candidates) s.cand_of[ep] = 0;  // leave the table clean for the next call
  } else {
    s.sorted.clear();
    for (size_t i = 0; i < n; ++i) s.sorted.emplace_back(candidates[i], static_cast<uint32_t>(i));
    std::sort(s.sorted.begin(), s.sorted.end());
    for (size_t i = 1; i < n; ++i) {
      if (s.sorted[i].first == s.sorted[i - 1].first) {
        s.duplicates.emplace_back(s.sorted[i].second, s.sorted[i - 1].second);
        s.sorted[i].second = s.sorted[i - 1].second;
      }
    }
    const auto& sorted = s.sorted;
    impl_->prefix(keys, out, s, [&sorted](EndpointId ep) -> uint32_t {
      const auto it = std::lower_bound(sorted.begin(), sorted.end(), std::make_pair(ep, uint32_t{0}));
      return it != sorted.end() && it->first == ep ? it->second : kNoCandidate;
    });
  }
  for (const auto& [i, first] : s.duplicates) out[i] = out[first];
}

size_t KvIndex::entries() const {
  size_t n = 0;
  for (size_t i = 0; i < impl_->n_shards; ++i) {
    std::shared_lock lock(impl_->shards[i].mu);
    n += impl_->shards[i].entries;
  }
  return n;
}

size_t KvIndex::memory_bytes() const {
  size_t n = sizeof(Impl) + impl_->n_shards * sizeof(Shard);
  for (size_t i = 0; i < impl_->n_shards; ++i) {
    const Shard& sh = impl_->shards[i];
    std::shared_lock lock(sh.mu);
    n += sh.cap * sizeof(Slot) + sh.pool.bytes();
  }
  return n;
}

}  // namespace llmd::router
