// KV events from real publishers into the router's index: kv::EventPublisher (what `llmd serve`
// runs) and a raw ZMQ PUB socket for what a broken or hostile server might send. Every wait is a
// poll with a deadline; ZMQ's slow joiner (messages sent before the subscription reaches the
// publisher are lost) is handled by publishing a probe until the index shows it.
#include "router/kv_event_subscriber.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <numeric>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/block_hash.hpp"
#include "common/error.hpp"
#include "kv/event_publisher.hpp"
#include "kv/kv_event_batch.hpp"

namespace llmd::router {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kDeadline = 10s;

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = kDeadline) {
  const auto end = Clock::now() + timeout;
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

double score_of(const KvIndex& idx, EndpointId ep, const std::vector<BlockHash>& chain) {
  std::vector<uint64_t> keys;
  for (const auto& h : chain) keys.push_back(h.lo);
  double out = 0;
  idx.longest_prefix(keys, std::span(&ep, 1), std::span(&out, 1));
  return out;
}

std::vector<int32_t> tokens(size_t n) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), 0);
  return t;
}

constexpr int32_t kBs = 4;

// Publishes `probe` until the index shows it on `ep` (the subscription is live from then on),
// then removes it again and waits for that too.
bool sync(kv::EventPublisher& pub, const KvIndex& idx, EndpointId ep, const BlockHash& probe) {
  const auto t = tokens(kBs);
  const auto end = Clock::now() + kDeadline;
  bool live = false;
  while (!live && Clock::now() < end) {
    pub.block_stored(std::span(&probe, 1), nullptr, t, kBs);
    pub.flush();
    live = wait_until([&] { return score_of(idx, ep, {probe}) > 0; }, 50ms);
  }
  if (!live) return false;
  pub.block_removed(std::span(&probe, 1));
  pub.flush();
  return wait_until([&] { return score_of(idx, ep, {probe}) == 0; });
}

TEST(KvEventSubscriber, FollowsAPublisher) {
  kv::EventPublisher gpu({.endpoint = "tcp://127.0.0.1:*", .topic = "kv@127.0.0.1:8000@m"});
  kv::EventPublisher cpu({.endpoint = "tcp://127.0.0.1:*", .topic = "kv@127.0.0.1:8001@m", .medium = "CPU"});
  KvIndex idx;
  KvEventSubscriber sub(idx);
  sub.add(1, gpu.bound_endpoint());
  sub.add(2, cpu.bound_endpoint());
  sub.add(2, cpu.bound_endpoint());  // again, same address: nothing changes
  EXPECT_EQ(sub.endpoints(), 2u);
  ASSERT_TRUE(sync(gpu, idx, 1, {0x9001, 1})) << "subscription to endpoint 1 never became live";
  ASSERT_TRUE(sync(cpu, idx, 2, {0x9002, 2})) << "subscription to endpoint 2 never became live";

  const std::vector<BlockHash> chain = {{11, 1}, {12, 2}, {13, 3}};
  const auto t = tokens(chain.size() * kBs);
  gpu.block_stored(chain, nullptr, t, kBs);
  gpu.flush();
  cpu.block_stored(std::span(chain).first(2), nullptr, std::span(t).first(2 * kBs), kBs);
  cpu.flush();
  EXPECT_TRUE(wait_until([&] { return score_of(idx, 1, chain) == 3; }));
  EXPECT_TRUE(wait_until([&] { return std::abs(score_of(idx, 2, chain) - 1.6) < 1e-9; }));

  gpu.block_removed(std::span(&chain[1], 1));  // a hole: only the first block counts now
  gpu.flush();
  EXPECT_TRUE(wait_until([&] { return score_of(idx, 1, chain) == 1; }));

  gpu.all_blocks_cleared();
  gpu.flush();
  EXPECT_TRUE(wait_until([&] { return score_of(idx, 1, chain) == 0; }));
  EXPECT_EQ(idx.entries(), 2u);  // endpoint 2's blocks stay

  const auto c1 = sub.counters(1);
  ASSERT_TRUE(c1);
  EXPECT_GE(c1->messages, 5u);
  EXPECT_GE(c1->events, 5u);
  EXPECT_EQ(c1->malformed, 0u);
  EXPECT_EQ(c1->sequence_gaps, 0u);
  EXPECT_EQ(c1->unknown_events, 0u);
  EXPECT_EQ(sub.counters().messages, c1->messages + sub.counters(2)->messages);
  EXPECT_EQ(sub.last_error(1), "");
}

TEST(KvEventSubscriber, RemoveDisconnectsAndClears) {
  kv::EventPublisher pub({.endpoint = "tcp://127.0.0.1:*", .topic = "kv@127.0.0.1:8000@m"});
  KvIndex idx;
  KvEventSubscriber sub(idx);
  sub.add(1, pub.bound_endpoint());
  ASSERT_TRUE(sync(pub, idx, 1, {0x9001, 1}));
  const std::vector<BlockHash> chain = {{21, 1}, {22, 2}};
  const auto t = tokens(chain.size() * kBs);
  pub.block_stored(chain, nullptr, t, kBs);
  pub.flush();
  ASSERT_TRUE(wait_until([&] { return score_of(idx, 1, chain) == 2; }));

  sub.remove(1);  // returns once done: no wait needed
  EXPECT_EQ(idx.entries(), 0u);
  EXPECT_FALSE(sub.counters(1));
  EXPECT_EQ(sub.endpoints(), 0u);
  sub.remove(1);  // not subscribed: no-op

  // The same publisher under another id: once that one sees new blocks, id 1 (whose socket is
  // closed) has not.
  sub.add(3, pub.bound_endpoint());
  ASSERT_TRUE(sync(pub, idx, 3, {0x9003, 3}));
  pub.block_stored(chain, nullptr, t, kBs);
  pub.flush();
  ASSERT_TRUE(wait_until([&] { return score_of(idx, 3, chain) == 2; }));
  EXPECT_EQ(score_of(idx, 1, chain), 0);
}

TEST(KvEventSubscriber, BadAddressIsAClearError) {
  KvIndex idx;
  KvEventSubscriber sub(idx);
  EXPECT_THROW(sub.add(1, "nonsense://x"), Error);
  EXPECT_THROW(sub.add(1, "tcp://"), Error);
  EXPECT_EQ(sub.endpoints(), 0u);
}

TEST(KvEventSubscriber, StopsPromptly) {
  KvIndex idx;
  const auto t0 = Clock::now();
  {
    KvEventSubscriber sub(idx, {.poll_timeout = 5s});  // the wake-up socket, not the timeout
    sub.add(1, "tcp://127.0.0.1:1");                   // nothing listens: ZMQ keeps retrying
  }
  EXPECT_LT(Clock::now() - t0, 2s);
}

// A raw ZMQ PUB socket: frames and payloads of our own choosing.
class RawPublisher {
 public:
  RawPublisher() : sock_(ctx_, zmq::socket_type::pub) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.bind("tcp://127.0.0.1:*");
    endpoint_ = sock_.get(zmq::sockopt::last_endpoint);
  }
  const std::string& endpoint() const { return endpoint_; }

  void send(const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i)
      sock_.send(zmq::buffer(frames[i]),
                 i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  // A well-formed message storing (or removing) `keys`, with sequence number `seq`.
  void send_valid(uint64_t seq, const std::vector<BlockHash>& keys, bool store = true) {
    kv::KvEventBatch b;
    if (store) {
      const auto t = tokens(keys.size() * kBs);
      b.add_stored(keys, nullptr, t, kBs);
    } else {
      b.add_removed(keys);
    }
    std::string payload;
    kv::encode_payload(b, 1.0, std::nullopt, "GPU", payload);
    send({kTopic, kv::encode_sequence(seq), payload});
  }
  // Publishes a probe until the index shows it on `ep`; returns the next sequence number.
  std::optional<uint64_t> sync(const KvIndex& idx, EndpointId ep) {
    const BlockHash probe{0x7777, 7};
    uint64_t seq = 0;
    const auto end = Clock::now() + kDeadline;
    while (Clock::now() < end) {
      send_valid(seq++, {probe});
      if (wait_until([&] { return score_of(idx, ep, {probe}) > 0; }, 50ms)) {
        send_valid(seq++, {probe}, false);
        if (!wait_until([&] { return score_of(idx, ep, {probe}) == 0; })) return std::nullopt;
        return seq;
      }
    }
    return std::nullopt;
  }

  static constexpr const char* kTopic = "kv@127.0.0.1:9@raw";

 private:
  zmq::context_t ctx_;
  zmq::socket_t sock_;
  std::string endpoint_;
};

TEST(KvEventSubscriber, MalformedMessagesAreCountedAndSkipped) {
  RawPublisher raw;
  KvIndex idx;
  KvEventSubscriber sub(idx);
  sub.add(5, raw.endpoint());
  auto next = raw.sync(idx, 5);
  ASSERT_TRUE(next) << "subscription never became live";
  uint64_t seq = *next;

  kv::KvEventBatch ok_batch;
  const BlockHash h{0x5151, 5};
  const auto t = tokens(kBs);
  ok_batch.add_stored(std::span(&h, 1), nullptr, t, kBs);
  std::string good;
  kv::encode_payload(ok_batch, 1.0, std::nullopt, "GPU", good);

  const std::string topic = RawPublisher::kTopic;
  // Frame-count errors are found before the sequence number is read: they do not advance it.
  raw.send({topic, kv::encode_sequence(seq)});                                     // 2 frames
  raw.send({topic, kv::encode_sequence(seq), good, "extra"});                      // 4 frames
  raw.send({topic, "1234567", good});                                              // 7-byte sequence
  raw.send({topic, kv::encode_sequence(seq++), "\xc1"});                           // not msgpack
  raw.send({topic, kv::encode_sequence(seq++), good.substr(0, 20)});               // truncated
  raw.send({topic, kv::encode_sequence(seq++), std::string("\x92\xa1x\x90", 4)});  // ts is a str
  raw.send({"other-topic", kv::encode_sequence(999), "junk"});                     // not subscribed: filtered
  // An unknown event next to a known one: the message applies, the unknown one is counted.
  std::string unknown = std::string("\x92\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\x92", 11) + "\x91\xa7" +
                        "Unknown" + "\x91\xb0" + "AllBlocksCleared";
  raw.send({topic, kv::encode_sequence(seq++), unknown});
  const BlockHash after{0x6161, 6};
  raw.send_valid(seq++, {after});

  ASSERT_TRUE(wait_until([&] { return score_of(idx, 5, {after}) == 1; }));
  const auto c = sub.counters(5);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->malformed, 6u);
  EXPECT_EQ(c->unknown_events, 1u);
  EXPECT_EQ(c->sequence_gaps, 0u);
  EXPECT_EQ(sub.counters().malformed, 6u);
  EXPECT_NE(sub.last_error(5), "");
  EXPECT_EQ(score_of(idx, 5, {h}), 0);  // no malformed payload was applied
}

TEST(KvEventSubscriber, SequenceGapsAndRestarts) {
  RawPublisher raw;
  KvIndex idx;
  KvEventSubscriber sub(idx);
  sub.add(6, raw.endpoint());
  auto next = raw.sync(idx, 6);
  ASSERT_TRUE(next);
  uint64_t seq = *next;

  const BlockHash a{0xa1, 1}, b{0xb1, 2}, c{0xc1, 3};
  raw.send_valid(seq++, {a});
  seq += 5;  // five messages lost
  raw.send_valid(seq++, {b});
  ASSERT_TRUE(wait_until([&] { return score_of(idx, 6, {b}) == 1; }));
  EXPECT_EQ(sub.counters(6)->sequence_gaps, 1u);
  EXPECT_EQ(score_of(idx, 6, {a}), 1);  // a gap keeps what is known

  // The publisher restarted (its sequence starts again at 0): what it held before is gone.
  raw.send_valid(0, {c});
  ASSERT_TRUE(wait_until([&] { return score_of(idx, 6, {c}) == 1; }));
  EXPECT_EQ(sub.counters(6)->sequence_gaps, 2u);
  EXPECT_EQ(score_of(idx, 6, {a}), 0);
  EXPECT_EQ(score_of(idx, 6, {b}), 0);
  raw.send_valid(1, {a});
  ASSERT_TRUE(wait_until([&] { return score_of(idx, 6, {a}) == 1; }));
  EXPECT_EQ(sub.counters(6)->sequence_gaps, 2u);
  EXPECT_EQ(sub.counters(6)->malformed, 0u);
}

}  // namespace
}  // namespace llmd::router
