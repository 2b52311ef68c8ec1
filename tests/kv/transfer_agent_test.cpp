// Two engines of the real model, each with a transfer agent, over loopback: a prefill leg's pinned
// blocks travel to the decode engine, which computes only the tail and generates what one server
// would; the prefill's pin is released; a pull that cannot be served is computed locally instead.
#include "kv/transfer/agent.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/cpu/cpu_backend.hpp"
#include "model/gguf.hpp"

namespace llmd::kv::transfer {
namespace {

using namespace std::chrono_literals;
using engine::EngineStats;
using engine::FinishReason;
using engine::RemoteBlocks;
using engine::RequestOutput;
using engine::RequestSpec;

const std::string kModel = std::string(LLMD_SHARED_DIR) + "/models/stories260K.gguf";
constexpr const char* kFingerprint = "stories260K";

struct Result {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  RequestOutput last;
  bool done = false;
};

// An engine on the real model, optionally with a transfer agent of its own.
struct Server {
  model::GgufFile file = model::GgufFile::open(kModel);
  std::unique_ptr<engine::Backend> backend;
  std::unique_ptr<TransferAgent> agent;
  std::unique_ptr<engine::Engine> engine;

  explicit Server(bool with_agent, std::chrono::milliseconds pin_timeout = 30s,
                  TransferMode mode = TransferMode::kTcp) {
    engine::BackendConfig bc;
    bc.threads = 1;
    bc.max_seq_len = 256;
    bc.kv.n_blocks = 32;
    backend = engine::cpu::make_cpu_backend(file, bc);
    engine::EngineConfig ec;
    ec.model_fingerprint = kFingerprint;
    ec.is_eos = [](int32_t id) { return id == 2; };
    ec.kv_pin_timeout = pin_timeout;
    if (with_agent) {
      TransferConfig tc;
      tc.secret = "test-secret";
      tc.io_timeout = 5s;
      agent = std::make_unique<TransferAgent>(tc, *backend->kv_region(), kFingerprint, mode,
                                              backend->kv_shared_arena());
      ec.kv_puller = agent.get();
      ec.kv_pins = agent.get();
    }
    engine = std::make_unique<engine::Engine>(*backend, ec);
    if (agent) agent->attach(*engine);
  }
  ~Server() { engine.reset(); }  // before the agent, which serves the pulls it waits for

  std::vector<int32_t> run(RequestSpec spec, Result& r) {
    spec.sampling.temperature = 0.0f;
    spec.sink = [&r](RequestOutput&& o) {
      std::lock_guard lock(r.mu);
      r.tokens.insert(r.tokens.end(), o.tokens.begin(), o.tokens.end());
      if (o.finish != FinishReason::kNone) {
        r.last = o;
        r.done = true;
        r.cv.notify_all();
      }
    };
    EXPECT_TRUE(engine->submit(std::move(spec)));
    std::unique_lock lock(r.mu);
    EXPECT_TRUE(r.cv.wait_for(lock, 60s, [&] { return r.done; }));
    return r.tokens;
  }

  template <class Pred>
  bool stats_become(Pred pred) {
    for (int i = 0; i < 400 && !pred(engine->stats()); ++i) std::this_thread::sleep_for(5ms);
    return pred(engine->stats());
  }
};

std::vector<int32_t> test_prompt() {
  std::ifstream in(std::string(LLMD_SHARED_DIR) + "/models/stories260K.golden.json");
  const auto j = nlohmann::json::parse(in);
  auto p = j[2]["prompt_tokens"].get<std::vector<int32_t>>();
  const auto c = j[2]["completion_tokens"].get<std::vector<int32_t>>();
  p.insert(p.end(), c.begin(), c.end());
  return p;
}

RequestSpec spec(const std::vector<int32_t>& prompt, int32_t max_tokens) {
  RequestSpec s;
  s.prompt = prompt;
  s.max_tokens = max_tokens;
  return s;
}

TEST(TransferAgent, ADisaggregatedRequestGeneratesWhatOneServerDoes) {
  const auto prompt = test_prompt();
  Server alone(false);
  Result ref;
  const auto expected = alone.run(spec(prompt, 12), ref);

  Server prefill(true), decode(true);
  const int32_t bs = decode.backend->block_size();
  const auto n_blocks = static_cast<uint64_t>((prompt.size() + bs - 1) / bs);  // the last partial one too
  ASSERT_GE(n_blocks, 3u);

  auto leg = spec(prompt, 1);
  leg.kv_pin_id = "req-1";
  Result first;
  prefill.run(std::move(leg), first);
  ASSERT_EQ(first.last.kv_pinned_blocks.size(), n_blocks);

  auto rest = spec(prompt, 12);
  rest.kv_remote = RemoteBlocks{prefill.agent->engine_id(), "127.0.0.1", prefill.agent->port(),
                                first.last.kv_pinned_blocks, "req-1"};
  Result out;
  EXPECT_EQ(decode.run(std::move(rest), out), expected);
  EXPECT_EQ(out.last.cached_tokens, int32_t(prompt.size()) - 1);
  ASSERT_TRUE(decode.stats_become([&](const EngineStats& s) { return s.kv_pulled_blocks == n_blocks; }));
  EXPECT_EQ(decode.engine->stats().computed_prompt_tokens, 1u);  // the last token, for its logits
  EXPECT_EQ(decode.agent->stats().pulls_ok.load(), 1u);
  EXPECT_EQ(decode.agent->stats().bytes_pulled.load(),
            n_blocks * decode.backend->kv_region()->layout.block_bytes());
  // The decode side's RELEASE frees the prefill's pin.
  EXPECT_TRUE(prefill.stats_become([](const EngineStats& s) {
    return s.kv_pins_released == 1 && s.kv_pinned_blocks == 0 && s.kv_usage == 0;
  }));
}

// The same over shared memory: the decode server maps the prefill's arena and copies from it; in
// auto mode a peer on this host is pulled from over shm too.
TEST(TransferAgent, OverShmOnTheSameHost) {
  const auto prompt = test_prompt();
  Server alone(false);
  Result ref;
  const auto expected = alone.run(spec(prompt, 12), ref);
  Server prefill(true, 30s, TransferMode::kShm);
  for (const TransferMode mode : {TransferMode::kShm, TransferMode::kAuto}) {
    Server decode(true, 30s, mode);
    const std::string id = mode == TransferMode::kShm ? "shm-1" : "auto-1";
    auto leg = spec(prompt, 1);
    leg.kv_pin_id = id;
    Result first;
    prefill.run(std::move(leg), first);
    auto rest = spec(prompt, 12);
    rest.kv_remote = RemoteBlocks{prefill.agent->engine_id(), "127.0.0.1", prefill.agent->port(),
                                  first.last.kv_pinned_blocks, id};
    Result out;
    EXPECT_EQ(decode.run(std::move(rest), out), expected);
    EXPECT_EQ(decode.agent->stats().shm_pulls_ok.load(), 1u);
    EXPECT_TRUE(decode.stats_become([](const EngineStats& s) { return s.kv_pulled_blocks > 0; }));
  }
  EXPECT_TRUE(prefill.stats_become([](const EngineStats& s) { return s.kv_pins_released == 2; }));
}

// Over ucx: both servers are told ucx (the prefill then offers it); the blocks move by one-sided gets.
TEST(TransferAgent, OverUcx) {
  const auto prompt = test_prompt();
  Server alone(false);
  Result ref;
  const auto expected = alone.run(spec(prompt, 12), ref);
  Server prefill(true, 30s, TransferMode::kUcx), decode(true, 30s, TransferMode::kUcx);
  auto leg = spec(prompt, 1);
  leg.kv_pin_id = "ucx-1";
  Result first;
  prefill.run(std::move(leg), first);
  auto rest = spec(prompt, 12);
  rest.kv_remote = RemoteBlocks{prefill.agent->engine_id(), "127.0.0.1", prefill.agent->port(),
                                first.last.kv_pinned_blocks, "ucx-1"};
  Result out;
  EXPECT_EQ(decode.run(std::move(rest), out), expected);
  EXPECT_EQ(decode.agent->stats().ucx_pulls_ok.load(), 1u);
  EXPECT_TRUE(decode.stats_become([](const EngineStats& s) { return s.kv_pulled_blocks > 0; }));
  EXPECT_TRUE(prefill.stats_become([](const EngineStats& s) { return s.kv_pins_released == 1; }));
}

TEST(TransferAgent, APullThatCannotBeServedIsComputedLocally) {
  const auto prompt = test_prompt();
  Server alone(false);
  Result ref;
  const auto expected = alone.run(spec(prompt, 8), ref);

  Server prefill(true, 100ms), decode(true);
  auto leg = spec(prompt, 1);
  leg.kv_pin_id = "req-2";
  Result first;
  prefill.run(std::move(leg), first);
  const RemoteBlocks where{prefill.agent->engine_id(), "127.0.0.1", prefill.agent->port(),
                           first.last.kv_pinned_blocks, "req-2"};

  // Another engine id (a restarted prefill server): refused before any byte is read.
  auto restarted = spec(prompt, 8);
  restarted.kv_remote = where;
  restarted.kv_remote->engine_id = "somebody-else";
  Result a;
  EXPECT_EQ(decode.run(std::move(restarted), a), expected);
  EXPECT_EQ(decode.agent->stats().failures[size_t(XferError::kEngineRestarted)].load(), 1u);

  // The pin timed out before the decode side came: unknown request, computed here.
  ASSERT_TRUE(prefill.stats_become([](const EngineStats& s) { return s.kv_pins_expired == 1; }));
  Server late(true);
  auto after = spec(prompt, 8);
  after.kv_remote = where;
  Result b;
  EXPECT_EQ(late.run(std::move(after), b), expected);
  EXPECT_EQ(late.agent->stats().failures[size_t(XferError::kUnknownRequest)].load(), 1u);
  EXPECT_TRUE(late.stats_become([&](const EngineStats& s) {
    return s.kv_pull_failures == 1 && s.kv_pulled_blocks == 0 && s.computed_prompt_tokens == prompt.size();
  }));
}

}  // namespace
}  // namespace llmd::kv::transfer
