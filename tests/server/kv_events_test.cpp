// KV events through the whole server: a ZMQ subscriber (what llm-d's KV-cache indexer or llmd's
// router runs) follows `llmd serve`'s prefix cache while completions arrive over HTTP. The keys it
// receives must be the server's own block keys (computed here independently from the tokens), and a
// cache mirrored from the events alone must predict the server's prefix hits after evictions.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_set>
#include <zmq.hpp>

#include "common/block_hash.hpp"
#include "kv/event_publisher.hpp"
#include "kv/kv_event_wire.hpp"
#include "server/server_fixture.hpp"

namespace llmd::server {
namespace {

using namespace std::chrono_literals;
using kv::wire::WireEvent;
using nlohmann::json;

constexpr int32_t kBs = 16;  // the CPU backend's default KV block size
constexpr const char* kTopic = "kv@127.0.0.1:0@stories";

// A publisher for the fixture's engine and a subscriber that is live before the server starts.
// Declare it before the ServerFixture: the engine must be gone before the publisher.
class EventTap {
 public:
  EventTap() : pub_({.endpoint = "tcp://127.0.0.1:*", .topic = kTopic}), sub_(ctx_, zmq::socket_type::sub) {
    sub_.set(zmq::sockopt::linger, 0);
    sub_.set(zmq::sockopt::subscribe, kTopic);
    sub_.connect(pub_.bound_endpoint());
    last_seq_ = kv::wire::sync_subscriber(pub_, sub_);
  }

  bool live() const { return last_seq_.has_value(); }
  kv::EventPublisher& publisher() { return pub_; }

  // Every event the server published since the previous call, in order, once the engine is idle
  // (the last step's batch is flushed before the engine reports idle). Checks that sequence
  // numbers are consecutive and that each message has events and the topic.
  std::vector<WireEvent> take(ServerFixture& f) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (f.engine().stats().running + f.engine().stats().waiting > 0 &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(2ms);
    std::vector<WireEvent> out;
    for (;;) {
      auto m = kv::wire::receive(sub_);
      if (!m) {  // quiet for 200 ms: done once everything sent has arrived
        if (*last_seq_ + 1 >= pub_.messages_sent() || std::chrono::steady_clock::now() > deadline) break;
        continue;
      }
      EXPECT_EQ(m->topic, kTopic);
      EXPECT_EQ(m->seq, *last_seq_ + 1) << "sequence numbers must be consecutive";
      last_seq_ = m->seq;
      EXPECT_FALSE(m->batch.events.empty()) << "a step without events sends nothing";
      for (auto& e : m->batch.events) out.push_back(std::move(e));
    }
    EXPECT_EQ(*last_seq_ + 1, pub_.messages_sent());
    EXPECT_EQ(pub_.dropped_events(), 0u);
    return out;
  }

 private:
  kv::EventPublisher pub_;
  zmq::context_t ctx_;
  zmq::socket_t sub_;
  std::optional<uint64_t> last_seq_;
};

// Distinct ordinary token ids (the demo vocabulary has 512; 0..2 are special).
std::vector<int32_t> prompt_tokens(int32_t n, int32_t seed) {
  std::vector<int32_t> t(n);
  for (int32_t i = 0; i < n; ++i) t[i] = 3 + (seed * 131 + i * 37 + (i * i) % 11) % 500;
  return t;
}

json complete(ServerFixture& f, const std::vector<int32_t>& prompt, int32_t max_tokens,
              const std::string& salt = "") {
  json req = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}, {"ignore_eos", true}};
  if (!salt.empty()) req["cache_salt"] = salt;
  const auto r = f.post("/v1/completions", req.dump());
  EXPECT_EQ(r.status, 200) << r.body;
  return json::parse(r.body);
}

int32_t cached_tokens(const json& resp) {
  return resp["usage"]["prompt_tokens_details"]["cached_tokens"].get<int32_t>();
}

// The prompt followed by its greedy continuation, computed on a separate engine (same model, same
// backend) straight through Engine::submit: the token ids the server generated, which its HTTP
// answer only gives as text.
std::vector<int32_t> greedy_sequence(engine::Engine& e, const std::vector<int32_t>& prompt, int32_t n) {
  struct State {
    std::mutex mu;
    std::vector<int32_t> tokens;
    std::promise<void> done;
  };
  auto st = std::make_shared<State>();
  engine::RequestSpec spec;
  spec.prompt = prompt;
  spec.sampling.temperature = 0;
  spec.max_tokens = n;
  spec.ignore_eos = true;
  spec.sink = [st](engine::RequestOutput&& o) {
    std::lock_guard lock(st->mu);
    st->tokens.insert(st->tokens.end(), o.tokens.begin(), o.tokens.end());
    if (o.finish != engine::FinishReason::kNone) st->done.set_value();
  };
  auto fut = st->done.get_future();
  EXPECT_TRUE(e.submit(std::move(spec)).has_value());
  EXPECT_EQ(fut.wait_for(30s), std::future_status::ready);
  std::lock_guard lock(st->mu);
  EXPECT_EQ(st->tokens.size(), static_cast<size_t>(n));
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), st->tokens.begin(), st->tokens.end());
  return all;
}

// The stored chain of one request: checks each BlockStored's shape and that the events chain (each
// one's parent is the previous one's last key; nil for the sequence's first block), and returns
// the keys and tokens end to end.
struct StoredChain {
  std::vector<BlockHash> hashes;
  std::vector<int32_t> tokens;
};

StoredChain stored_chain(const std::vector<WireEvent>& events, std::optional<BlockHash> first_parent) {
  StoredChain c;
  for (const WireEvent& e : events) {
    if (e.tag != "BlockStored") continue;
    EXPECT_EQ(e.block_size, kBs);
    EXPECT_EQ(e.tokens.size(), e.hashes.size() * kBs);
    EXPECT_TRUE(e.lora_nil);
    EXPECT_EQ(e.medium, "GPU");
    if (c.hashes.empty()) {
      EXPECT_EQ(e.parent, first_parent);
    } else {
      EXPECT_EQ(e.parent, c.hashes.back()) << "events of one sequence must chain";
    }
    c.hashes.insert(c.hashes.end(), e.hashes.begin(), e.hashes.end());
    c.tokens.insert(c.tokens.end(), e.tokens.begin(), e.tokens.end());
  }
  return c;
}

std::vector<BlockHash> keys(const std::string& salt, std::span<const int32_t> tokens) {
  std::vector<BlockHash> out;
  hash_blocks(root_hash(ServerFixture::kFingerprint, salt), tokens, kBs, out);
  return out;
}

TEST(KvEvents, StoredKeysAreTheServersBlockKeys) {
  EventTap tap;  // before the fixture: outlives its engine
  ASSERT_TRUE(tap.live()) << "subscription never became live";
  ServerFixtureOptions opts;
  opts.events = &tap.publisher();
  ServerFixture f(opts);
  ServerFixture ref;  // where the generated token ids are recomputed

  // 40 prompt tokens + 24 generated = 64 tokens, but the last generated token's KV is never
  // computed: 63 tokens, so 3 full blocks (the third holds prompt and generated tokens), not 4.
  const std::vector<int32_t> prompt = prompt_tokens(40, 1);
  const std::vector<int32_t> seq = greedy_sequence(ref.engine(), prompt, 24);
  const json a = complete(f, prompt, 24);
  EXPECT_EQ(a["usage"]["completion_tokens"], 24);
  EXPECT_EQ(cached_tokens(a), 0);
  const std::vector<WireEvent> ev_a = tap.take(f);
  for (const WireEvent& e : ev_a) EXPECT_EQ(e.tag, "BlockStored") << "nothing to evict in a 256-block pool";
  const StoredChain ca = stored_chain(ev_a, std::nullopt);
  const std::span<const int32_t> computed = std::span(seq).first(seq.size() - 1);
  const std::vector<BlockHash> want = keys("", computed);
  ASSERT_EQ(want.size(), 3u);
  EXPECT_EQ(ca.hashes, want);
  EXPECT_EQ(ca.tokens, std::vector<int32_t>(seq.begin(), seq.begin() + 3 * kBs));

  // Another tenant's salt: the same tokens under another root, so other keys.
  const json b = complete(f, prompt, 24, "tenant-b");
  EXPECT_EQ(cached_tokens(b), 0);
  const StoredChain cb = stored_chain(tap.take(f), std::nullopt);
  EXPECT_EQ(cb.hashes, keys("tenant-b", computed));
  EXPECT_EQ(cb.tokens, ca.tokens);
  EXPECT_NE(cb.hashes.front(), ca.hashes.front());

  // A router that saw those keys predicts the hit: a prompt extending the stored tokens (prompt and
  // generated) reuses all three blocks, and only its new blocks are stored, chained to the third.
  std::vector<int32_t> longer = ca.tokens;
  for (int32_t t : prompt_tokens(21, 9)) longer.push_back(t);  // 69 tokens
  const json c = complete(f, longer, 4);
  EXPECT_EQ(cached_tokens(c), 3 * kBs);
  const StoredChain cc = stored_chain(tap.take(f), ca.hashes.back());
  const std::vector<BlockHash> want_c = keys("", std::span(longer));  // 69 + 3 computed: 4 blocks
  ASSERT_EQ(want_c.size(), 4u);
  EXPECT_EQ(cc.hashes, std::vector<BlockHash>(want_c.begin() + 3, want_c.end()));
}

// What a router knows: the keys stored and not yet removed, from the events alone.
struct Mirror {
  std::unordered_set<BlockHash> live;
  std::vector<BlockHash> removed;  // in the order they went

  void apply(const std::vector<WireEvent>& events) {
    for (const WireEvent& e : events) {
      if (e.tag == "BlockStored") {
        for (const BlockHash& h : e.hashes)
          EXPECT_TRUE(live.insert(h).second) << "stored twice without removal";
      } else if (e.tag == "BlockRemoved") {
        for (const BlockHash& h : e.hashes) {
          EXPECT_EQ(live.erase(h), 1u)
              << "removed a key that was never stored (or already removed): " << to_hex(h);
          removed.push_back(h);
        }
      } else {
        ADD_FAILURE() << "unexpected " << e.tag;
      }
    }
  }
  // The prefix hit the server should report for a prompt: the leading run of live keys among the
  // blocks it may reuse (the last prompt token is always computed).
  int32_t predicted_hit(const std::vector<int32_t>& prompt) const {
    const std::vector<BlockHash> ks = keys("", std::span(prompt).first(prompt.size() - 1));
    int32_t n = 0;
    while (n < static_cast<int32_t>(ks.size()) && live.contains(ks[n])) ++n;
    return n * kBs;
  }
  bool was_removed(const BlockHash& h) const {
    return std::find(removed.begin(), removed.end(), h) != removed.end();
  }
};

TEST(KvEvents, EvictionsAreRemovedAndLaterHitsMatchTheMirror) {
  EventTap tap;
  ASSERT_TRUE(tap.live()) << "subscription never became live";
  ServerFixtureOptions opts;
  opts.n_blocks = 8;  // 128 tokens of KV
  opts.events = &tap.publisher();
  ServerFixture f(opts);
  Mirror mirror;

  // Sends one request, checks the server's prefix hit against the mirror's prediction, its stored
  // keys against its tokens, and its removals against what was stored; returns its events.
  auto run = [&](const std::vector<int32_t>& prompt, int32_t max_tokens) {
    const int32_t predicted = mirror.predicted_hit(prompt);
    const json r = complete(f, prompt, max_tokens);
    EXPECT_EQ(cached_tokens(r), predicted);
    const std::vector<WireEvent> ev = tap.take(f);
    mirror.apply(ev);
    // Prompts here end on a block boundary and generate fewer than 16 tokens: every computed full
    // block is a prompt block, and those past the hit are stored, chained to the hit's last key.
    const std::vector<BlockHash> all = keys("", std::span(prompt));
    const int32_t hit = predicted / kBs;
    const StoredChain c = stored_chain(ev, hit ? std::optional(all[hit - 1]) : std::nullopt);
    EXPECT_EQ(c.hashes, std::vector<BlockHash>(all.begin() + hit, all.end()));
    EXPECT_EQ(c.tokens, std::vector<int32_t>(prompt.begin() + hit * kBs, prompt.end()));
    for (const BlockHash& h : all) EXPECT_TRUE(mirror.live.contains(h));
    return predicted;
  };

  const std::vector<int32_t> p1 = prompt_tokens(64, 1), p2 = prompt_tokens(80, 2);
  const std::vector<BlockHash> k1 = keys("", std::span(p1)), k2 = keys("", std::span(p2));

  // 4 blocks stored (5 held while running); 3 never used + 1 freed stay free, 4 evictable.
  EXPECT_EQ(run(p1, 8), 0);
  EXPECT_TRUE(mirror.removed.empty());
  // Needs 6 blocks: 4 free, then 2 evictions, deepest first: p1's 4th and 3rd blocks.
  EXPECT_EQ(run(p2, 8), 0);
  EXPECT_EQ(mirror.removed, (std::vector<BlockHash>{k1[3], k1[2]}));
  // p1 again: its first two blocks are still there, its third was removed, so the hit stops at 32
  // tokens (48 without the eviction). Recomputing evicts p2's deepest blocks and re-stores p1's.
  EXPECT_EQ(run(p1, 8), 2 * kBs);
  ASSERT_EQ(mirror.removed.size(), 4u);
  EXPECT_EQ(mirror.removed[2], k2[4]);
  EXPECT_EQ(mirror.removed[3], k2[3]);
  // p2 again: hits exactly its blocks that were not removed.
  EXPECT_TRUE(mirror.was_removed(k2[3]));
  EXPECT_EQ(run(p2, 8), 3 * kBs);
  for (const BlockHash& h : mirror.removed)
    EXPECT_TRUE(std::find(k1.begin(), k1.end(), h) != k1.end() ||
                std::find(k2.begin(), k2.end(), h) != k2.end());
}

}  // namespace
}  // namespace llmd::server
