// The serving engine end to end on the real model: concurrent requests in batched steps give
// llama.cpp's golden tokens, the prefix cache skips shared prefixes without changing outputs,
// preemption recomputes correctly, aborts free everything.
#include "engine/engine.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "engine/cpu/cpu_backend.hpp"
#include "engine/generator.hpp"
#include "kv/transfer/layout.hpp"
#include "model/gguf.hpp"

namespace llmd::engine {
namespace {

const std::string kModel = std::string(LLMD_SHARED_DIR) + "/models/stories260K.gguf";

// Collects one request's outputs; wait() blocks until it finished.
class Collector {
 public:
  OutputSink sink() {
    return [this](RequestOutput&& o) {
      std::lock_guard lock(mu_);
      tokens_.insert(tokens_.end(), o.tokens.begin(), o.tokens.end());
      if (o.finish != FinishReason::kNone) {
        finish_ = o.finish;
        last_ = o;
        cv_.notify_all();
      }
    };
  }
  FinishReason wait() {
    std::unique_lock lock(mu_);
    EXPECT_TRUE(cv_.wait_for(lock, std::chrono::seconds(60), [&] { return finish_ != FinishReason::kNone; }));
    return finish_;
  }
  std::vector<int32_t> tokens() {
    std::lock_guard lock(mu_);
    return tokens_;
  }
  RequestOutput last() {
    std::lock_guard lock(mu_);
    return last_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> tokens_;
  FinishReason finish_ = FinishReason::kNone;
  RequestOutput last_;
};

struct Fixture {
  model::GgufFile file = model::GgufFile::open(kModel);
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Engine> engine;

  explicit Fixture(int32_t n_blocks, int32_t max_num_seqs = 8, bool prefix_caching = true,
                   int32_t batch_tokens = 256,
                   std::chrono::milliseconds kv_pin_timeout = std::chrono::seconds(30),
                   KvPuller* kv_puller = nullptr, KvPinSink* kv_pins = nullptr) {
    BackendConfig bc;
    bc.threads = 2;
    bc.max_seq_len = 512;
    bc.max_seqs = max_num_seqs;
    bc.max_batch_tokens = batch_tokens;
    bc.kv.n_blocks = n_blocks;
    backend = cpu::make_cpu_backend(file, bc);
    EngineConfig ec;
    ec.scheduler.max_num_seqs = max_num_seqs;
    ec.scheduler.max_num_batched_tokens = batch_tokens;
    ec.prefix_caching = prefix_caching;
    ec.model_fingerprint = "stories260K";
    ec.is_eos = [](int32_t id) { return id == 2; };
    ec.kv_pin_timeout = kv_pin_timeout;
    ec.kv_puller = kv_puller;
    ec.kv_pins = kv_pins;
    engine = std::make_unique<Engine>(*backend, ec);
  }
};

std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> golden() {
  std::ifstream in(std::string(LLMD_SHARED_DIR) + "/models/stories260K.golden.json");
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> out;
  for (const auto& c : nlohmann::json::parse(in))
    out.emplace_back(c["prompt_tokens"].get<std::vector<int32_t>>(),
                     c["completion_tokens"].get<std::vector<int32_t>>());
  return out;
}

RequestSpec greedy(std::vector<int32_t> prompt, int32_t max_tokens, Collector& c) {
  RequestSpec s;
  s.prompt = std::move(prompt);
  s.sampling.temperature = 0.0f;
  s.max_tokens = max_tokens;
  s.sink = c.sink();
  return s;
}

void run_golden_concurrently(Fixture& f, int copies) {
  const auto cases = golden();
  std::vector<std::unique_ptr<Collector>> cols;
  for (int k = 0; k < copies; ++k) {
    for (const auto& [prompt, completion] : cases) {
      cols.push_back(std::make_unique<Collector>());
      ASSERT_TRUE(f.engine->submit(greedy(prompt, static_cast<int32_t>(completion.size()), *cols.back())));
    }
  }
  for (size_t i = 0; i < cols.size(); ++i) {
    EXPECT_EQ(cols[i]->wait(), FinishReason::kLength);
    EXPECT_EQ(cols[i]->tokens(), cases[i % cases.size()].second) << "request " << i;
  }
}

TEST(Engine, ConcurrentRequestsGiveGoldenTokens) {
  Fixture f(256);
  run_golden_concurrently(f, 3);
  // The last outputs reach their sinks just before the step's counters are published.
  for (int i = 0; i < 200 && f.engine->stats().generation_tokens < 12u * 64u; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto st = f.engine->stats();
  EXPECT_EQ(st.generation_tokens, 12u * 64u);
  EXPECT_LT(st.steps, 12u * 64u / 2) << "requests were not batched";
}

TEST(Engine, PreemptionUnderKvPressureStillGivesGoldenTokens) {
  // 24 blocks of 16 tokens: two 69-token sequences need 10; twelve cannot run at once.
  Fixture f(24);
  run_golden_concurrently(f, 3);
  EXPECT_GT(f.engine->stats().preemptions, 0u);
}

TEST(Engine, PrefixCacheComputesOnlyTheUncachedSuffix) {
  std::vector<int32_t> shared(384);
  for (size_t i = 0; i < shared.size(); ++i) shared[i] = 3 + static_cast<int32_t>((i * 37) % 500);
  shared[0] = 1;
  std::vector<int32_t> a = shared, b = shared;
  for (int i = 0; i < 20; ++i) a.push_back(100 + i), b.push_back(200 + i);

  Fixture cold(128, 8, /*prefix_caching=*/false);
  Collector cb;
  ASSERT_TRUE(cold.engine->submit(greedy(b, 24, cb)));
  cb.wait();

  Fixture f(128);
  Collector ca, cb2;
  ASSERT_TRUE(f.engine->submit(greedy(a, 24, ca)));
  ca.wait();
  const uint64_t before = f.engine->stats().computed_prompt_tokens;
  ASSERT_TRUE(f.engine->submit(greedy(b, 24, cb2)));
  cb2.wait();
  const uint64_t computed = f.engine->stats().computed_prompt_tokens - before;
  EXPECT_LE(computed, 20u + 16u) << "more than one block beyond the uncached suffix was computed";
  EXPECT_EQ(cb2.last().cached_tokens, 384);
  EXPECT_EQ(cb2.tokens(), cb.tokens()) << "a prefix-cache hit changed the output";
}

TEST(Engine, AbortEndsTheRequestAndFreesItsBlocks) {
  Fixture f(64);
  Collector c;
  RequestSpec s = greedy({1, 403, 407}, 400, c);
  s.ignore_eos = true;
  auto id = f.engine->submit(std::move(s));
  ASSERT_TRUE(id);
  while (c.tokens().size() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  f.engine->abort(*id);
  EXPECT_EQ(c.wait(), FinishReason::kAbort);
  for (int i = 0; i < 100 && f.engine->stats().running != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(f.engine->stats().running, 0);
  EXPECT_EQ(f.engine->stats().kv_usage, 0.0);
}

// Polls the engine's stats until `pred` holds (bounded).
template <class Pred>
bool stats_become(Engine& e, Pred pred) {
  for (int i = 0; i < 400; ++i) {
    if (pred(e.stats())) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred(e.stats());
}

// Records what the engine makes readable; refuses the first unpin (a peer still reading).
class RecordingPins : public KvPinSink {
 public:
  void pinned(const std::string& id, std::span<const int32_t> blocks,
              std::span<const BlockHash> keys) override {
    std::lock_guard lock(mu);
    log.push_back("pin " + id);
    pinned_blocks.assign(blocks.begin(), blocks.end());
    pinned_keys.assign(keys.begin(), keys.end());
  }
  bool unpinned(const std::string& id) override {
    std::lock_guard lock(mu);
    const bool ok = refusals-- <= 0;
    log.push_back((ok ? "unpin " : "busy ") + id);
    return ok;
  }
  std::mutex mu;
  std::vector<std::string> log;
  std::vector<int32_t> pinned_blocks;
  std::vector<BlockHash> pinned_keys;
  int refusals = 1;
};

// The prefill leg of a disaggregated request: its prompt's full blocks outlive it, pinned for a
// decode server, until the decode side releases them or the timeout frees them.
TEST(Engine, APrefillLegsBlocksStayPinnedUntilReleasedOrTimedOut) {
  // A prompt of several blocks: a golden prompt and its completion; its own continuation, cold.
  const auto cases = golden();
  std::vector<int32_t> prompt = cases[0].first;
  prompt.insert(prompt.end(), cases[0].second.begin(), cases[0].second.end());
  Fixture cold(64, 8, /*prefix_caching=*/false);
  Collector ref;
  ASSERT_TRUE(cold.engine->submit(greedy(prompt, 4, ref)));
  ref.wait();
  const std::vector<int32_t> expected = ref.tokens();
  ASSERT_EQ(expected.size(), 4u);

  RecordingPins sink;
  Fixture f(64, 8, true, 256, std::chrono::milliseconds(300), nullptr, &sink);
  const auto bs = static_cast<size_t>(f.backend->block_size());
  const auto n_blocks = (prompt.size() + bs - 1) / bs;  // the last one partial: pinned too
  ASSERT_GE(n_blocks, 2u);
  ASSERT_NE(prompt.size() % bs, 0u);
  Collector a;
  auto spec = greedy(prompt, 1, a);
  spec.kv_pin_id = "leg-a";
  ASSERT_TRUE(f.engine->submit(std::move(spec)));
  EXPECT_EQ(a.wait(), FinishReason::kLength);
  EXPECT_EQ(a.tokens(), std::vector<int32_t>{expected[0]});
  ASSERT_EQ(a.last().kv_pinned_blocks.size(), n_blocks);
  {
    std::lock_guard lock(sink.mu);  // told before the last output: with the blocks and their keys
    EXPECT_EQ(sink.pinned_blocks, a.last().kv_pinned_blocks);
    // The full blocks' chained keys, then the partial block's over the tokens it holds.
    std::vector<BlockHash> keys;
    hash_blocks(root_hash("stories260K", ""), prompt, f.backend->block_size(), keys);
    keys.push_back(block_hash(keys.back(), std::span(prompt).subspan(keys.size() * bs)));
    EXPECT_EQ(sink.pinned_keys, keys);
  }
  ASSERT_TRUE(
      stats_become(*f.engine, [&](const EngineStats& s) { return s.kv_pinned_blocks == int64_t(n_blocks); }));
  EXPECT_DOUBLE_EQ(f.engine->stats().kv_usage, double(n_blocks) / 64);

  // While pinned the blocks are prefix hits, and give the same tokens.
  Collector b;
  ASSERT_TRUE(f.engine->submit(greedy(prompt, 4, b)));
  EXPECT_EQ(b.wait(), FinishReason::kLength);
  EXPECT_EQ(b.last().cached_tokens, int32_t((prompt.size() / bs) * bs));  // the full blocks
  EXPECT_EQ(b.tokens(), expected);

  f.engine->kv_release("leg-a");
  f.engine->kv_release("leg-a");  // twice, or an unknown id: nothing more is freed
  f.engine->kv_release("nobody");
  // The first unpin is refused (a peer still reading): the blocks are freed on a retry.
  EXPECT_TRUE(stats_become(*f.engine, [](const EngineStats& s) {
    return s.kv_pinned_blocks == 0 && s.kv_usage == 0.0 && s.kv_pins_released + s.kv_pins_expired == 1;
  }));
  {
    std::lock_guard lock(sink.mu);
    EXPECT_EQ(sink.log, (std::vector<std::string>{"pin leg-a", "busy leg-a", "unpin leg-a"}));
  }

  // Nobody pulls: the timeout frees them, with the engine otherwise idle.
  Collector c;
  spec = greedy(prompt, 1, c);
  spec.kv_pin_id = "leg-c";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(f.engine->submit(std::move(spec)));
  c.wait();
  EXPECT_TRUE(stats_become(*f.engine,
                           [](const EngineStats& s) { return s.kv_pins_released + s.kv_pins_expired == 2; }));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(300));
  const auto st = f.engine->stats();
  EXPECT_EQ(st.kv_pinned_blocks, 0);
  EXPECT_EQ(st.kv_usage, 0.0);
}

// A puller that copies straight from a prefill engine's arena (what the transfer engine does over a
// socket), on its own thread, then releases the prefill's pin; or fails without copying.
class CopyingPuller : public KvPuller {
 public:
  explicit CopyingPuller(Fixture& prefill) : prefill_(prefill) {}
  ~CopyingPuller() override {
    for (auto& t : threads_) t.join();
  }
  void pull(const RemoteBlocks& from, std::vector<KvBlockPair> blocks,
            std::function<void(bool)> done) override {
    pulled_blocks += blocks.size();
    threads_.emplace_back([this, id = from.request_id, blocks = std::move(blocks), done = std::move(done)] {
      const auto src = prefill_.backend->kv_region();
      while (hold) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (!fail) {
        for (const KvBlockPair& b : blocks)
          kv::transfer::copy_block(src->layout, src->base, b.remote, dst->base, b.local);
      }
      prefill_.engine->kv_release(id);
      done(!fail);
    });
  }
  void release(const RemoteBlocks& from) override {
    ++released;
    prefill_.engine->kv_release(from.request_id);
  }

  std::optional<KvRegion> dst;  // the decode engine's arena, set once it exists
  std::atomic<bool> fail = false;
  std::atomic<bool> hold = false;  // the transfer waits while set
  std::atomic<size_t> pulled_blocks = 0;
  std::atomic<int> released = 0;

 private:
  Fixture& prefill_;
  std::vector<std::thread> threads_;
};

// The decode leg of a disaggregated request: the blocks the prefill leg pinned are pulled (the last,
// partial one too), only the last token is computed, and the tokens are those of the whole request
// on one server. A failed pull is
// computed here instead, to the same tokens; blocks held locally already are not pulled again.
TEST(Engine, ADecodeLegPullsThePrefillsBlocksAndComputesOnlyTheTail) {
  const auto cases = golden();
  std::vector<int32_t> prompt = cases[1].first;
  prompt.insert(prompt.end(), cases[1].second.begin(), cases[1].second.end());
  Fixture cold(64, 8, /*prefix_caching=*/false);
  Collector ref;
  ASSERT_TRUE(cold.engine->submit(greedy(prompt, 8, ref)));
  ref.wait();

  Fixture prefill(64);
  CopyingPuller puller(prefill);
  Fixture decode(64, 8, true, 256, std::chrono::seconds(30), &puller);
  puller.dst = decode.backend->kv_region();
  const int32_t bs = decode.backend->block_size();
  const auto n_blocks = (prompt.size() + bs - 1) / bs;
  ASSERT_GE(n_blocks, 3u);

  const auto leg = [&](const std::string& id) {
    Collector p;
    auto spec = greedy(prompt, 1, p);
    spec.kv_pin_id = id;
    EXPECT_TRUE(prefill.engine->submit(std::move(spec)));
    p.wait();
    return RemoteBlocks{"prefill-engine", "127.0.0.1", 1, p.last().kv_pinned_blocks, id};
  };
  const auto decode_leg = [&](const RemoteBlocks& remote, Collector& d) {
    auto spec = greedy(prompt, 8, d);
    spec.kv_remote = remote;
    EXPECT_TRUE(decode.engine->submit(std::move(spec)));
    EXPECT_EQ(d.wait(), FinishReason::kLength);
  };

  Collector d1;
  decode_leg(leg("one"), d1);
  EXPECT_EQ(d1.tokens(), ref.tokens());
  EXPECT_EQ(d1.last().cached_tokens, int32_t(prompt.size()) - 1);
  EXPECT_EQ(puller.pulled_blocks, n_blocks);
  ASSERT_TRUE(
      stats_become(*decode.engine, [&](const EngineStats& s) { return s.kv_pulled_blocks == n_blocks; }));
  EXPECT_EQ(decode.engine->stats().computed_prompt_tokens, 1u);
  EXPECT_TRUE(stats_become(*prefill.engine, [](const EngineStats& s) { return s.kv_pins_released == 1; }));

  // The full blocks are held locally now: only the last (a sequence's own, never cached) is pulled.
  Collector d2;
  decode_leg(leg("two"), d2);
  EXPECT_EQ(d2.tokens(), ref.tokens());
  EXPECT_EQ(puller.pulled_blocks, n_blocks + 1);
  EXPECT_EQ(puller.released, 0);

  // A failed pull: computed here, same tokens, counted.
  Fixture fresh(64, 8, true, 256, std::chrono::seconds(30), &puller);
  puller.dst = fresh.backend->kv_region();
  puller.fail = true;
  Collector d3;
  auto spec = greedy(prompt, 8, d3);
  spec.kv_remote = leg("three");
  ASSERT_TRUE(fresh.engine->submit(std::move(spec)));
  EXPECT_EQ(d3.wait(), FinishReason::kLength);
  EXPECT_EQ(d3.tokens(), ref.tokens());
  EXPECT_TRUE(stats_become(*fresh.engine, [&](const EngineStats& s) {
    return s.kv_pull_failures == 1 && s.kv_pulled_blocks == 0 && s.computed_prompt_tokens == prompt.size();
  }));
  EXPECT_TRUE(stats_become(*prefill.engine, [](const EngineStats& s) {
    return s.kv_pins_released == 3 && s.kv_pinned_blocks == 0;
  }));

  // Aborted while its blocks are arriving: it ends only when the transfer has stopped writing them.
  Fixture other(64, 8, true, 256, std::chrono::seconds(30), &puller);
  puller.dst = other.backend->kv_region();
  puller.fail = false;
  puller.hold = true;
  Collector d4;
  spec = greedy(prompt, 8, d4);
  spec.kv_remote = leg("four");
  const auto id = other.engine->submit(std::move(spec));
  ASSERT_TRUE(id);
  ASSERT_TRUE(stats_become(*other.engine, [](const EngineStats& s) { return s.kv_usage > 0; }));
  other.engine->abort(*id);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(d4.last().finish, FinishReason::kNone);
  puller.hold = false;
  EXPECT_EQ(d4.wait(), FinishReason::kAbort);
  EXPECT_TRUE(stats_become(*other.engine, [](const EngineStats& s) {
    return s.kv_usage == 0.0 && s.kv_pulled_blocks == 0 && s.kv_pull_failures == 0;
  }));
}

TEST(Engine, RefusesRequestsThatCanNeverRun) {
  Fixture f(8);  // 128 tokens of KV
  Collector c;
  EXPECT_FALSE(f.engine->submit(greedy({}, 4, c)));
  EXPECT_FALSE(f.engine->submit(greedy({1, 99999}, 4, c)));
  EXPECT_FALSE(f.engine->submit(greedy({1, 2, 3}, 0, c)));
  EXPECT_FALSE(f.engine->submit(greedy(std::vector<int32_t>(500, 5), 20, c)));   // past max_seq_len
  EXPECT_FALSE(f.engine->submit(greedy(std::vector<int32_t>(100, 5), 100, c)));  // more KV than exists
  EXPECT_TRUE(f.engine->submit(greedy(std::vector<int32_t>(100, 5), 20, c)));
  c.wait();
}

}  // namespace
}  // namespace llmd::engine
