#pragma once
// The serving engine: one thread owns the scheduler, the KV block manager and the backend, and runs
// steps back to back while there is work. Other threads talk to it only through submit()/abort()
// (a locked inbox, read once per step) and receive outputs through each request's sink.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <expected>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/backend.hpp"
#include "engine/block_manager.hpp"
#include "engine/kv_event_sink.hpp"
#include "engine/kv_transfer.hpp"
#include "engine/pinned_blocks.hpp"
#include "engine/request.hpp"
#include "engine/scheduler.hpp"

namespace llmd::engine {

struct EngineConfig {
  SchedulerConfig scheduler;
  bool prefix_caching = true;
  std::string model_fingerprint;        // the root of every block key (DESIGN.md)
  std::function<bool(int32_t)> is_eos;  // end-of-generation tokens of the tokenizer
  // How long a prefill leg's pinned blocks wait for the decode server before they are freed.
  std::chrono::milliseconds kv_pin_timeout{std::chrono::seconds(30)};
  // Pulls decode legs' blocks from prefill servers; nullptr: such requests compute their prompt.
  // It must outlive the engine.
  KvPuller* kv_puller = nullptr;
  // Told of prefill legs' pins (peers read them through it); nullptr: pins are kept and freed only.
  KvPinSink* kv_pins = nullptr;
};

// Read by /metrics and /health from any thread.
struct EngineStats {
  int64_t running = 0, waiting = 0;
  double kv_usage = 0.0;                         // referenced blocks / all blocks
  uint64_t prefix_queries = 0, prefix_hits = 0;  // tokens
  uint64_t prompt_tokens = 0, generation_tokens = 0, computed_prompt_tokens = 0;
  uint64_t preemptions = 0, steps = 0;
  int64_t kv_pinned_blocks = 0;  // held for decode servers to pull
  // Pins freed by the timeout, not by the decode side (and the rare release that found a peer still
  // reading, freed on a retry 10 ms later).
  uint64_t kv_pins_expired = 0;
  uint64_t kv_pins_released = 0;  // pins the decode side released
  uint64_t kv_pulled_blocks = 0;  // decode legs' blocks that arrived from prefill servers
  uint64_t kv_pull_failures = 0;  // pulls that failed (the prompt was computed here instead)
};

class Engine {
 public:
  Engine(Backend& backend, const EngineConfig& cfg, KvEventSink* events = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Thread-safe. Checks what can be checked up front (empty or too long prompt, token ids, a request
  // that could never fit the KV cache) and returns the request id, or the reason it was refused.
  std::expected<uint64_t, std::string> submit(RequestSpec spec);
  // Thread-safe. The request ends with FinishReason::kAbort at the next step (if still running).
  void abort(uint64_t id);
  // Thread-safe. The decode side has the blocks pinned under `pin_id` (or needs them no more):
  // they are unpinned at the next wake-up. Unknown or already released ids are ignored.
  void kv_release(std::string pin_id);
  EngineStats stats() const;
  const Backend& backend() const { return backend_; }

 private:
  void loop();
  void take_inbox();
  void step();
  void publish_stats();
  void finish(Sequence& s, FinishReason why, RequestOutput& out);
  void pin(Sequence& s, RequestOutput& out);
  void unpin(const std::vector<std::string>& released);
  void start_pull(std::unique_ptr<Sequence> s);
  void pulled(uint64_t id, bool ok);

  Backend& backend_;
  EngineConfig cfg_;
  KvEventSink* events_;
  BlockManager blocks_;
  PinnedBlocks pins_;
  Scheduler sched_;
  Batch batch_;
  std::vector<float> logits_;
  std::vector<TokenLogprob> top_;
  std::vector<uint64_t> done_;  // requests finished in the current step

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::vector<std::unique_ptr<Sequence>> inbox_;
  std::vector<uint64_t> aborts_;
  std::vector<std::string> kv_releases_;
  std::vector<std::pair<uint64_t, bool>> kv_pulled_;  // pulls that ended, and how
  // Engine thread: decode legs whose blocks are arriving, and those aborted meanwhile (they end
  // when their pull does: until then the transfer may write their blocks).
  std::unordered_map<uint64_t, std::unique_ptr<Sequence>> pulling_;
  std::unordered_set<uint64_t> aborted_pulls_;
  bool stop_ = false;
  std::atomic<uint64_t> next_id_{1};

  mutable std::mutex stats_mu_;
  EngineStats stats_;
  std::thread thread_;
};

}  // namespace llmd::engine
