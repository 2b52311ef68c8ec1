// Scorers of where a prompt's prefix is cached, and of stickiness:
// - prefix-cache-scorer (approximate): an index learnt from the router's own decisions — every
//   request's blocks are assumed cached where it was sent — with an LRU per endpoint as large as
//   its KV cache (vllm:cache_config_info num_gpu_blocks, or lruCapacityPerServer);
// - precise-prefix-cache-scorer: the index the servers' KV events feed (KvIndex);
// both score the longest run of the prompt's blocks an endpoint holds / the prompt's blocks;
// - session-affinity-scorer: 1 for the endpoint named by x-session-token;
// - no-hit-lru-scorer: spreads requests that hit no cache over the least recently used endpoints.
#include <algorithm>
#include <deque>
#include <list>
#include <mutex>
#include <unordered_map>

#include "common/base64.hpp"
#include "common/error.hpp"
#include "router/kv_index.hpp"
#include "router/plugin_registry.hpp"

namespace llmd::router {
namespace {

std::span<const uint64_t> keys_of(const SchedRequest& r, int64_t max_blocks) {
  const std::size_t n = std::min<std::size_t>(r.block_keys.size(), static_cast<std::size_t>(max_blocks));
  return std::span(r.block_keys).first(n);
}

// out[i] = the longest run of keys endpoint i holds in `index` (tier-weighted blocks).
void longest(const KvIndex& index, std::span<const uint64_t> keys, std::span<Endpoint* const> eps,
             std::span<double> out) {
  if (keys.empty()) {
    std::fill(out.begin(), out.end(), 0.0);
    return;
  }
  thread_local std::vector<EndpointId> ids;
  ids.resize(eps.size());
  for (std::size_t i = 0; i < eps.size(); ++i) ids[i] = eps[i]->id();
  index.longest_prefix(keys, ids, out);
}

// Records the blocks in ctx.prefix_blocks and turns them into scores: held / the prompt's blocks.
void to_scores(SchedContext& ctx, std::size_t n_keys, std::span<Endpoint* const> eps, std::span<double> out) {
  ctx.prefix_blocks.record(eps, out);
  for (double& o : out) o = n_keys ? std::min(o / static_cast<double>(n_keys), 1.0) : 0.0;
}

void score_prefix(const KvIndex& index, SchedContext& ctx, std::span<const uint64_t> keys,
                  std::span<Endpoint* const> eps, std::span<double> out) {
  longest(index, keys, eps, out);
  to_scores(ctx, keys.size(), eps, out);
}

class ApproxPrefixScorer final : public Scorer, public PreRequest, public EndpointObserver {
 public:
  ApproxPrefixScorer(int64_t max_blocks, int64_t capacity, bool auto_tune)
      : max_blocks_(max_blocks), capacity_(capacity), auto_tune_(auto_tune) {}

  bool fills_prefix_blocks() const override { return true; }
  void score(SchedContext& ctx, std::span<Endpoint* const> eps, std::span<double> out) override {
    score_prefix(index_, ctx, keys_of(ctx.req, max_blocks_), eps, out);
  }

  void pre_request(SchedContext& ctx, const Outcome& o) override {
    const auto keys = keys_of(ctx.req, max_blocks_);
    for (const Endpoint* e : {o.target, o.prefill})
      if (e) learn(*e, keys);
  }

  void endpoint_removed(EndpointId id) override {
    std::lock_guard lock(mu_);
    lrus_.erase(id);
    index_.cleared(id);
  }

 private:
  struct Lru {
    std::list<uint64_t> order;  // most recent first
    std::unordered_map<uint64_t, std::list<uint64_t>::iterator> pos;
  };

  void learn(const Endpoint& e, std::span<const uint64_t> keys) {
    const int64_t blocks = e.num_gpu_blocks.load(std::memory_order_relaxed);
    const auto cap = static_cast<std::size_t>(auto_tune_ && blocks > 0 ? blocks : capacity_);
    std::lock_guard lock(mu_);
    Lru& lru = lrus_[e.id()];
    thread_local std::vector<uint64_t> fresh, evicted;
    fresh.clear();
    evicted.clear();
    for (const uint64_t k : keys) {
      if (auto it = lru.pos.find(k); it != lru.pos.end()) {
        lru.order.splice(lru.order.begin(), lru.order, it->second);
        continue;
      }
      lru.order.push_front(k);
      lru.pos.emplace(k, lru.order.begin());
      fresh.push_back(k);
    }
    while (lru.order.size() > cap) {
      evicted.push_back(lru.order.back());
      lru.pos.erase(lru.order.back());
      lru.order.pop_back();
    }
    index_.stored(e.id(), fresh, Medium::kGpu);
    index_.removed(e.id(), evicted, Medium::kGpu);
  }

  int64_t max_blocks_, capacity_;
  bool auto_tune_;
  KvIndex index_;
  std::mutex mu_;
  std::unordered_map<EndpointId, Lru> lrus_;
};

// With speculativeIndexing (llm-d's parameter), each decision is also assumed cached at its
// target for speculativeTTL: a request that follows its prefix before the server's KV events have
// arrived (the prefill is still running) still finds it, instead of scattering the prefix.
class PrecisePrefixScorer final : public Scorer, public PreRequest, public EndpointObserver {
 public:
  PrecisePrefixScorer(const KvIndex& index, int64_t max_blocks,
                      std::optional<std::chrono::nanoseconds> speculative)
      : index_(index), max_blocks_(max_blocks), ttl_(speculative) {}
  bool fills_prefix_blocks() const override { return true; }
  void score(SchedContext& ctx, std::span<Endpoint* const> eps, std::span<double> out) override {
    const auto keys = keys_of(ctx.req, max_blocks_);
    longest(index_, keys, eps, out);
    if (ttl_) {
      expire(ctx.now);
      spec_scores_.resize(eps.size());
      longest(speculative_, keys, eps, spec_scores_);
      for (std::size_t i = 0; i < eps.size(); ++i) out[i] = std::max(out[i], spec_scores_[i]);
    }
    to_scores(ctx, keys.size(), eps, out);
  }

  void endpoint_removed(EndpointId id) override {
    if (ttl_) speculative_.cleared(id);  // its pending expiries then remove nothing
  }

  void pre_request(SchedContext& ctx, const Outcome& o) override {
    if (!ttl_) return;
    const auto keys = keys_of(ctx.req, max_blocks_);
    for (const Endpoint* e : {o.target, o.prefill}) {
      if (!e || keys.empty()) continue;
      speculative_.stored(e->id(), keys, Medium::kGpu);
      pending_.push_back({ctx.now + ttl_->count(), e->id(), std::vector<uint64_t>(keys.begin(), keys.end())});
    }
  }

 private:
  struct Pending {
    SteadyNs until;
    EndpointId ep;
    std::vector<uint64_t> keys;
  };
  // Scheduler-lock only, like every plugin call. A block decided twice within the TTL is removed
  // by the first expiry: the speculation is short-lived by design.
  void expire(SteadyNs now) {
    while (!pending_.empty() && pending_.front().until <= now) {
      speculative_.removed(pending_.front().ep, pending_.front().keys, Medium::kGpu);
      pending_.pop_front();
    }
  }

  const KvIndex& index_;
  int64_t max_blocks_;
  std::optional<std::chrono::nanoseconds> ttl_;
  KvIndex speculative_;
  std::deque<Pending> pending_;
  std::vector<double> spec_scores_;
};

// llm-d's token is base64 of the endpoint's name; ours names it by host:port, which the proxy
// sends back in the response's x-session-token.
class SessionAffinityScorer final : public Scorer {
 public:
  void score(SchedContext& ctx, std::span<Endpoint* const> eps, std::span<double> out) override {
    const std::optional<std::string> want =
        ctx.req.session_token.empty() ? std::nullopt : base64_decode(ctx.req.session_token);
    for (std::size_t i = 0; i < eps.size(); ++i) out[i] = want && eps[i]->address() == *want ? 1.0 : 0.0;
  }
};

class NoHitLruScorer final : public Scorer, public PreRequest, public EndpointObserver {
 public:
  explicit NoHitLruScorer(std::size_t size) : size_(size) {}

  void score(SchedContext& ctx, std::span<Endpoint* const> eps, std::span<double> out) override {
    if (!cold(ctx)) {
      std::fill(out.begin(), out.end(), 0.5);
      return;
    }
    const std::size_t n = eps.size();
    if (n == 1) {
      out[0] = 1.0;
      return;
    }
    // Never used endpoints first (candidate order), then the used ones from the oldest use.
    std::lock_guard lock(mu_);
    std::size_t never = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (!pos_.contains(eps[i]->id()))
        out[i] = 1.0 - static_cast<double>(never++) / static_cast<double>(n - 1);
    std::size_t rank = never;
    for (auto it = order_.rbegin(); it != order_.rend(); ++it)
      for (std::size_t i = 0; i < n; ++i)
        if (eps[i]->id() == *it)
          out[i] = std::max(0.0, 1.0 - static_cast<double>(rank++) / static_cast<double>(n - 1));
  }

  void endpoint_removed(EndpointId id) override {
    std::lock_guard lock(mu_);
    if (auto it = pos_.find(id); it != pos_.end()) {
      order_.erase(it->second);
      pos_.erase(it);
    }
  }

  void pre_request(SchedContext& ctx, const Outcome& o) override {
    if (!cold(ctx)) return;
    std::lock_guard lock(mu_);
    for (const Endpoint* e : {o.target, o.prefill}) {
      if (!e) continue;
      if (auto it = pos_.find(e->id()); it != pos_.end()) order_.erase(it->second);
      order_.push_front(e->id());
      pos_[e->id()] = order_.begin();
      if (order_.size() > size_) {
        pos_.erase(order_.back());
        order_.pop_back();
      }
    }
  }

 private:
  static bool cold(const SchedContext& ctx) { return !ctx.prefix_blocks.any_held(); }
  std::size_t size_;
  std::mutex mu_;
  std::list<EndpointId> order_;  // most recent first
  std::unordered_map<EndpointId, std::list<EndpointId>::iterator> pos_;
};

}  // namespace

std::shared_ptr<Plugin> make_prefix_scorer(std::string_view type, Params& p, const PluginEnv& env) {
  if (type == "prefix-cache-scorer") {
    // llm-d moved these to its approx-prefix-cache-producer; both spellings are read here. The
    // keys are always the servers' token blocks (router --block-size), so the block size
    // parameters are accepted for compatibility only.
    p.ignore({"blockSize", "blockSizeTokens", "maxPrefixTokensToMatch", "hashBlockSize"});
    const int64_t max_blocks = p.integer("maxPrefixBlocksToMatch", 256, 1, 1 << 20);
    const int64_t cap = p.integer("lruCapacityPerServer", 31250, 1, int64_t{1} << 32);
    const bool tune = p.boolean("autoTune", true);
    return std::make_shared<ApproxPrefixScorer>(max_blocks, cap, tune);
  }
  if (type == "precise-prefix-cache-scorer") {
    if (!env.kv_index) fail("precise-prefix-cache-scorer needs the router's KV event index");
    p.ignore({"tokenProcessorConfig", "indexerConfig", "kvEventsConfig"});
    const int64_t max_blocks = p.integer("maxPrefixBlocksToMatch", 1 << 16, 1, 1 << 20);
    std::optional<std::chrono::nanoseconds> speculative;
    if (p.boolean("speculativeIndexing", false))
      speculative =
          parse_duration(p.string("speculativeTTL", "2s"), "precise-prefix-cache-scorer: speculativeTTL");
    return std::make_shared<PrecisePrefixScorer>(*env.kv_index, max_blocks, speculative);
  }
  if (type == "session-affinity-scorer") return std::make_shared<SessionAffinityScorer>();
  if (type == "no-hit-lru-scorer") {
    p.ignore({"prefixPluginType", "prefixPluginName"});
    return std::make_shared<NoHitLruScorer>(static_cast<std::size_t>(p.integer("lruSize", 1024, 1, 1 << 24)));
  }
  return nullptr;
}

}  // namespace llmd::router
