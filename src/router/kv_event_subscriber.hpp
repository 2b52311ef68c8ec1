#pragma once
// Follows the servers' KV events (vLLM's ZMQ PUB format, kv/kv_event_batch.hpp) into the router's
// KvIndex: one ZMQ SUB socket per endpoint, all polled by one background thread, each message
// decoded (kv/kv_event_decoder.hpp) and applied: BlockStored -> index.stored, BlockRemoved ->
// index.removed, AllBlocksCleared -> index.cleared.
//
// What cannot be trusted is counted, never fatal: a message that does not decode is skipped
// (malformed); an unknown event is skipped (unknown_events); a jump in an endpoint's sequence
// numbers is a gap (PUB drops past its high-water mark, and a subscriber misses what was sent
// before it joined): nothing can recover the lost events, so the index stays as it is and only
// the blocks stored or removed again correct it. A sequence number that goes back means the
// publisher restarted with an empty cache: counted as a gap, and the endpoint's blocks cleared.
//
// Threading: add/remove/counters may be called from any thread. add and remove are commands to
// the subscriber thread (a mutex-protected queue plus an inproc wake-up socket, so the thread
// never waits for its poll timeout to see them) and return once it has executed them. The index
// is written only from the subscriber thread.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kv/kv_event_decoder.hpp"
#include "router/kv_index.hpp"

namespace llmd::router {

struct KvEventSubscriberConfig {
  static constexpr const char* kDefaultTopicPrefix = "kv@";
  static constexpr std::chrono::milliseconds kDefaultPollTimeout{100};
  static constexpr int kDefaultReceiveHwm = 100000;
  static constexpr std::size_t kDefaultMaxMessagesPerTurn = 64;

  // ZMQ subscription prefix: llm-d's topics are "kv@<host:port>@<model>". Empty takes everything.
  std::string topic_prefix = kDefaultTopicPrefix;
  // zmq::poll timeout. Commands wake the thread at once, so this only bounds how long an idle
  // thread sleeps.
  std::chrono::milliseconds poll_timeout = kDefaultPollTimeout;
  // ZMQ receive high-water mark per socket (messages); past it ZMQ drops, seen as a gap.
  int receive_hwm = kDefaultReceiveHwm;
  // Messages read from one socket before the others get a turn, so one busy server cannot starve
  // the rest.
  std::size_t max_messages_per_turn = kDefaultMaxMessagesPerTurn;
  // Also sets ZMQ's maxmsgsize: a peer sending a larger frame is disconnected by ZMQ.
  kv::KvEventDecoderConfig decoder{};
};

struct KvEventCounters {
  uint64_t messages = 0;        // decoded and applied
  uint64_t events = 0;          // known events applied
  uint64_t malformed = 0;       // messages that did not decode, skipped
  uint64_t unknown_events = 0;  // events with an unknown tag, skipped
  uint64_t sequence_gaps = 0;   // jumps (and restarts) in the sequence numbers
};

class KvEventSubscriber {
 public:
  // Starts the thread. `index` must outlive the subscriber.
  KvEventSubscriber(KvIndex& index, KvEventSubscriberConfig config = {});
  // Stops the thread (within one poll turn) and closes the sockets; the index keeps its entries.
  ~KvEventSubscriber();
  KvEventSubscriber(const KvEventSubscriber&) = delete;
  KvEventSubscriber& operator=(const KvEventSubscriber&) = delete;

  // Subscribes to `zmq_address` ("tcp://10.0.0.5:5557") for endpoint `ep`. ZMQ connects in the
  // background and reconnects on its own, so a server that is not up yet is fine. Adding an ep
  // again with the same address does nothing; with another address it is remove + add. Throws
  // llmd::Error when ZMQ rejects the address.
  void add(EndpointId ep, std::string zmq_address);
  // Disconnects and clears the endpoint's blocks from the index (index.cleared). No-op when the
  // endpoint is not subscribed.
  void remove(EndpointId ep);

  KvEventCounters counters() const;                              // all endpoints, since start
  std::optional<KvEventCounters> counters(EndpointId ep) const;  // nullopt when not subscribed
  // The last decode error of an endpoint ("" when none), for diagnostics.
  std::string last_error(EndpointId ep) const;
  std::size_t endpoints() const;

 private:
  struct Counters {
    std::atomic<uint64_t> messages{0}, events{0}, malformed{0}, unknown_events{0}, sequence_gaps{0};
    KvEventCounters snapshot() const;
  };
  struct Connection;
  struct Command {
    bool add = true;
    EndpointId ep = 0;
    std::string address;
    std::string error;  // set by the thread for a failed add
    bool done = false;
  };
  struct Zmq;  // context and wake-up sockets, kept out of this header

  void run();
  void execute(Command& c);
  void submit(Command& c);
  void poll_connection(Connection& c);
  void handle_message(Connection& c);
  void note_error(Connection& c, std::string error);

  KvIndex& index_;
  KvEventSubscriberConfig config_;
  std::unique_ptr<Zmq> zmq_;
  kv::KvEventDecoder decoder_;  // subscriber thread only

  std::mutex cmd_mu_;
  std::condition_variable cmd_cv_;
  std::deque<Command*> commands_;  // cmd_mu_; each owned by the add/remove call waiting on it

  mutable std::mutex stats_mu_;
  std::unordered_map<EndpointId, std::shared_ptr<Counters>> endpoint_counters_;  // stats_mu_
  std::unordered_map<EndpointId, std::string> last_errors_;                      // stats_mu_
  Counters total_;

  std::vector<std::unique_ptr<Connection>> connections_;  // subscriber thread only
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace llmd::router
