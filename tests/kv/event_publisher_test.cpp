#include "kv/event_publisher.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <numeric>
#include <thread>
#include <zmq.hpp>

#include "common/error.hpp"
#include "engine/block_manager.hpp"
#include "kv/kv_event_wire.hpp"

namespace llmd::kv {
namespace {

using namespace std::chrono_literals;
using wire::decode;
using wire::receive;
using wire::WireBatch;
using wire::WireEvent;

std::vector<int32_t> tokens(int32_t first, int32_t n) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(KvEventWire, EncodesVllmTaggedArraysAndCoalesces) {
  const BlockHash h0{1, 2}, h1{3, 4}, h2{5, 6}, other{7, 8};
  KvEventBatch batch;
  const auto t = tokens(0, 12);
  batch.add_stored(std::span(&h0, 1), nullptr, std::span(t).first(4), 4);
  batch.add_stored(std::span(&h1, 1), &h0, std::span(t).subspan(4, 4), 4);     // continues: coalesced
  batch.add_stored(std::span(&h2, 1), &other, std::span(t).subspan(8, 4), 4);  // another chain
  batch.add_removed(std::span(&h0, 1));
  batch.add_removed(std::span(&h1, 1));  // coalesced
  batch.add_cleared();
  ASSERT_EQ(batch.events().size(), 4u);
  EXPECT_EQ(batch.weight(), 6u);

  std::string payload;
  encode_payload(batch, 1234.5, std::nullopt, "GPU", payload);
  const WireBatch w = decode(payload);
  EXPECT_EQ(w.ts, 1234.5);
  EXPECT_FALSE(w.dp_rank);
  ASSERT_EQ(w.events.size(), 4u);
  EXPECT_EQ(w.events[0].tag, "BlockStored");
  EXPECT_EQ(w.events[0].hashes, (std::vector<BlockHash>{h0, h1}));
  EXPECT_FALSE(w.events[0].parent);
  EXPECT_EQ(w.events[0].tokens, tokens(0, 8));
  EXPECT_EQ(w.events[0].block_size, 4);
  EXPECT_TRUE(w.events[0].lora_nil);
  EXPECT_EQ(w.events[0].medium, "GPU");
  EXPECT_EQ(w.events[1].hashes, (std::vector<BlockHash>{h2}));
  EXPECT_EQ(w.events[1].parent, other);
  EXPECT_EQ(w.events[1].tokens, tokens(8, 4));
  EXPECT_EQ(w.events[2].tag, "BlockRemoved");
  EXPECT_EQ(w.events[2].hashes, (std::vector<BlockHash>{h0, h1}));
  EXPECT_EQ(w.events[2].medium, "GPU");
  EXPECT_EQ(w.events[3].tag, "AllBlocksCleared");

  encode_payload(batch, 1.0, 3, "CPU", payload);
  const WireBatch w3 = decode(payload);
  EXPECT_EQ(w3.dp_rank, 3);
  EXPECT_EQ(w3.events[0].medium, "CPU");

  EXPECT_EQ(encode_sequence(0), std::string(8, '\0'));
  EXPECT_EQ(encode_sequence(0x0102030405060708ULL), "\x01\x02\x03\x04\x05\x06\x07\x08");
}

TEST(KvEventWire, RejectsTokenCountMismatch) {
  KvEventBatch batch;
  const BlockHash h{1, 1};
  const auto t = tokens(0, 3);
  EXPECT_THROW(batch.add_stored(std::span(&h, 1), nullptr, t, 4), Error);
}

TEST(EventPublisher, PublishesBlockManagerEventsOverZmq) {
  const std::string topic = "kv@127.0.0.1:8000@test-model";
  EventPublisher pub({.endpoint = "tcp://127.0.0.1:*", .topic = topic});
  ASSERT_NE(pub.bound_endpoint().find("tcp://127.0.0.1:"), std::string::npos);

  zmq::context_t ctx;
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::rcvtimeo, 50);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::subscribe, topic);
  sub.connect(pub.bound_endpoint());

  // ZMQ's slow joiner: probes until the subscription is live, then drains them.
  const std::optional<uint64_t> last_seq = wire::sync_subscriber(pub, sub);
  ASSERT_TRUE(last_seq) << "subscription never became live";
  sub.set(zmq::sockopt::rcvtimeo, 5000);

  constexpr int32_t kBs = 4;
  engine::BlockManager m({.n_blocks = 4, .block_size = kBs}, &pub);
  const BlockHash root = root_hash("test-model", "");
  auto prefill = [&](const std::vector<int32_t>& toks) {
    std::vector<BlockHash> hs;
    hash_blocks(root, toks, kBs, hs);
    std::vector<int32_t> table;
    m.acquire_cached_prefix(hs, table);
    while (table.size() < hs.size()) table.push_back(*m.allocate());
    for (size_t i = 0; i < hs.size(); ++i)
      m.commit_full_block(table[i], hs[i], i ? &hs[i - 1] : nullptr, std::span(toks).subspan(i * kBs, kBs));
    return table;
  };

  // Step 1: a request stores two blocks.
  const auto ta = prefill(tokens(0, 8));
  const std::vector<BlockHash> ha = {*m.key_of(ta[0]), *m.key_of(ta[1])};
  pub.end_of_step();
  m.release(ta);
  // Step 2: a request needing the whole pool evicts them (deepest first) and stores four.
  const auto tb = prefill(tokens(100, 16));
  std::vector<BlockHash> hb;
  for (int32_t b : tb) hb.push_back(*m.key_of(b));
  pub.end_of_step();
  pub.end_of_step();  // an empty step sends nothing
  // Step 3: the cache is reset.
  m.reset_prefix_cache();
  pub.end_of_step();

  auto m1 = receive(sub);
  ASSERT_TRUE(m1);
  EXPECT_EQ(m1->topic, topic);
  EXPECT_EQ(m1->seq, *last_seq + 1);
  EXPECT_GT(m1->batch.ts, 1.6e9);
  ASSERT_EQ(m1->batch.events.size(), 1u);
  const WireEvent& s1 = m1->batch.events[0];
  EXPECT_EQ(s1.tag, "BlockStored");
  EXPECT_EQ(s1.hashes, ha);
  EXPECT_FALSE(s1.parent);
  EXPECT_EQ(s1.tokens, tokens(0, 8));
  EXPECT_EQ(s1.block_size, kBs);
  EXPECT_EQ(s1.medium, "GPU");

  auto m2 = receive(sub);
  ASSERT_TRUE(m2);
  EXPECT_EQ(m2->seq, *last_seq + 2);
  ASSERT_EQ(m2->batch.events.size(), 2u);
  EXPECT_EQ(m2->batch.events[0].tag, "BlockRemoved");
  EXPECT_EQ(m2->batch.events[0].hashes, (std::vector<BlockHash>{ha[1], ha[0]}));
  EXPECT_EQ(m2->batch.events[1].tag, "BlockStored");
  EXPECT_EQ(m2->batch.events[1].hashes, hb);
  EXPECT_EQ(m2->batch.events[1].tokens, tokens(100, 16));

  auto m3 = receive(sub);
  ASSERT_TRUE(m3);
  EXPECT_EQ(m3->seq, *last_seq + 3);
  ASSERT_EQ(m3->batch.events.size(), 1u);
  EXPECT_EQ(m3->batch.events[0].tag, "AllBlocksCleared");

  m.release(tb);
  EXPECT_EQ(pub.dropped_events(), 0u);
  // What is recorded but not yet flushed still goes out on shutdown.
  m.reset_prefix_cache();
  pub.shutdown();
  auto m4 = receive(sub);
  ASSERT_TRUE(m4);
  EXPECT_EQ(m4->seq, *last_seq + 4);
}

TEST(EventPublisher, DataParallelRankAndBoundedQueue) {
  EventPublisher pub(
      {.endpoint = "tcp://127.0.0.1:*", .topic = "kv@x@m", .dp_rank = 2, .max_queued_blocks = 2});
  const BlockHash h[3] = {{1, 1}, {2, 2}, {3, 3}};
  const auto t = tokens(0, 4);
  pub.block_stored(std::span(&h[0], 1), nullptr, t, 4);
  pub.block_stored(std::span(&h[1], 1), &h[0], t, 4);
  pub.block_stored(std::span(&h[2], 1), &h[1], t, 4);  // over the bound: dropped, counted
  EXPECT_EQ(pub.dropped_events(), 1u);
  pub.end_of_step();
  pub.shutdown();
  EXPECT_EQ(pub.messages_sent(), 1u);
  pub.block_removed(std::span(&h[0], 1));
  pub.end_of_step();  // after shutdown: dropped, not sent
  EXPECT_EQ(pub.messages_sent(), 1u);
}

TEST(EventPublisher, BadEndpointIsAClearError) {
  EXPECT_THROW(EventPublisher({.endpoint = "tcp://nonsense", .topic = "kv@x@m"}), Error);
  EXPECT_THROW(EventPublisher({.endpoint = "tcp://127.0.0.1:*", .topic = ""}), Error);
}

}  // namespace
}  // namespace llmd::kv
