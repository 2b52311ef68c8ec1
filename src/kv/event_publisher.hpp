#pragma once
// Publishes the block manager's KV events to routers over ZMQ PUB in vLLM's format (wire format in
// kv/kv_event_batch.hpp), so llm-d's KV-cache indexer and llmd's router can follow this server's
// prefix cache.
//
// Threading: the KvEventSink calls and flush() come from the engine thread and never block on
// ZMQ: events accumulate in an engine-owned batch, flush() hands it to a bounded queue (one short
// mutex section, no I/O), and a publisher thread encodes and sends. When the queue is full the
// batch is dropped and counted (dropped_events()): a router then misses those changes until the
// blocks are stored or removed again, which is better than stalling decode. Batches are sent in
// the order they were flushed.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/kv_event_sink.hpp"
#include "kv/kv_event_batch.hpp"

namespace llmd::kv {

struct EventPublisherConfig {
  // "tcp://HOST:PORT" where the PUB socket binds; PORT "*" picks a free port (see bound_endpoint()).
  std::string endpoint;
  // "kv@<host:port>@<model>": llm-d's indexer reads the pod and the model from it.
  std::string topic;
  // Sent as the payload's third element only when set (vLLM's data_parallel_rank).
  std::optional<int32_t> dp_rank = std::nullopt;
  // Which tier these blocks live in. "GPU" is what vLLM sends for its engine's own KV pool and what
  // llm-d's scorers treat as the fast tier, so the engine pool says "GPU" even on the CPU backend;
  // the host/disk tiers publish with their own medium ("CPU", "DISK").
  std::string medium = "GPU";
  // Bound of the queue between engine and publisher thread, in blocks named by queued events.
  size_t max_queued_blocks = 1 << 18;
  // ZMQ send high-water mark (messages per subscriber); past it PUB drops, as ZMQ PUB does.
  int send_hwm = 100000;
};

class EventPublisher final : public engine::KvEventSink {
 public:
  // Binds the socket and starts the publisher thread; throws llmd::Error when it cannot bind.
  explicit EventPublisher(EventPublisherConfig config);
  // shutdown().
  ~EventPublisher() override;
  EventPublisher(const EventPublisher&) = delete;
  EventPublisher& operator=(const EventPublisher&) = delete;

  // KvEventSink, engine thread: record into the current batch.
  void block_stored(std::span<const BlockHash> hashes, const BlockHash* parent,
                    std::span<const int32_t> token_ids, int32_t block_size) override;
  void block_removed(std::span<const BlockHash> hashes) override;
  void all_blocks_cleared() override;
  void end_of_step() override { flush(); }

  // Engine thread, once per step (end_of_step): ends the current batch (one message); nothing is
  // sent for a step without events.
  void flush();

  // Flushes what is recorded, sends everything queued, stops the thread and closes the socket
  // (waiting at most 500 ms for slow subscribers). Call once the engine no longer uses this sink;
  // idempotent.
  void shutdown();

  // The endpoint actually bound (the port resolved when the config asked for "*").
  const std::string& bound_endpoint() const { return bound_endpoint_; }
  const EventPublisherConfig& config() const { return config_; }
  uint64_t dropped_events() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t messages_sent() const { return sent_.load(std::memory_order_relaxed); }

 private:
  struct Impl;  // the ZMQ objects, kept out of this header
  void run();

  EventPublisherConfig config_;
  std::unique_ptr<Impl> impl_;
  std::string bound_endpoint_;

  KvEventBatch current_;  // engine thread only

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<double, KvEventBatch>> queue_;  // (timestamp, batch), guarded by mu_
  std::vector<KvEventBatch> spare_;                    // sent batches kept for their capacity, mu_
  size_t queued_blocks_ = 0;                           // mu_
  bool stopping_ = false;                              // mu_

  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> sent_{0};
  std::thread thread_;
  bool shut_down_ = false;
};

}  // namespace llmd::kv
