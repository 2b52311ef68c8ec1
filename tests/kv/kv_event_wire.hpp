#pragma once
// Test side of the KV-events wire (kv/kv_event_batch.hpp): a decoder written with msgpack-cxx
// straight from the bytes (independent of the encoder), a ZMQ SUB receive helper, and the ZMQ
// slow-joiner handshake. Shared by tests/kv and tests/server.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <msgpack.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/block_hash.hpp"
#include "kv/event_publisher.hpp"

namespace llmd::kv::wire {

// A decoded event.
struct WireEvent {
  std::string tag;
  std::vector<BlockHash> hashes;
  std::optional<BlockHash> parent;
  std::vector<int32_t> tokens;
  int32_t block_size = 0;
  bool lora_nil = false;
  std::string medium;
};

struct WireBatch {
  double ts = 0;
  std::vector<WireEvent> events;
  std::optional<int32_t> dp_rank;
};

inline BlockHash hash_of(const msgpack::object& o) {
  EXPECT_EQ(o.type, msgpack::type::BIN);
  EXPECT_EQ(o.via.bin.size, 16u);
  return *from_wire_bytes(std::span(reinterpret_cast<const uint8_t*>(o.via.bin.ptr), o.via.bin.size));
}

inline std::vector<BlockHash> hashes_of(const msgpack::object& o) {
  EXPECT_EQ(o.type, msgpack::type::ARRAY);
  std::vector<BlockHash> out;
  for (uint32_t i = 0; i < o.via.array.size; ++i) out.push_back(hash_of(o.via.array.ptr[i]));
  return out;
}

inline WireBatch decode(std::string_view payload) {
  const msgpack::object_handle oh = msgpack::unpack(payload.data(), payload.size());
  const msgpack::object& root = oh.get();
  WireBatch b;
  EXPECT_EQ(root.type, msgpack::type::ARRAY);
  EXPECT_TRUE(root.via.array.size == 2 || root.via.array.size == 3);
  EXPECT_EQ(root.via.array.ptr[0].type, msgpack::type::FLOAT64);
  b.ts = root.via.array.ptr[0].as<double>();
  if (root.via.array.size == 3) b.dp_rank = root.via.array.ptr[2].as<int32_t>();
  const msgpack::object& evs = root.via.array.ptr[1];
  EXPECT_EQ(evs.type, msgpack::type::ARRAY);
  for (uint32_t i = 0; i < evs.via.array.size; ++i) {
    const msgpack::object& e = evs.via.array.ptr[i];
    EXPECT_EQ(e.type, msgpack::type::ARRAY);
    const msgpack::object* f = e.via.array.ptr;
    WireEvent w;
    w.tag = f[0].as<std::string>();
    if (w.tag == "BlockStored") {
      EXPECT_EQ(e.via.array.size, 7u);
      w.hashes = hashes_of(f[1]);
      if (f[2].type != msgpack::type::NIL) w.parent = hash_of(f[2]);
      w.tokens = f[3].as<std::vector<int32_t>>();
      w.block_size = f[4].as<int32_t>();
      w.lora_nil = f[5].type == msgpack::type::NIL;
      w.medium = f[6].as<std::string>();
    } else if (w.tag == "BlockRemoved") {
      EXPECT_EQ(e.via.array.size, 3u);
      w.hashes = hashes_of(f[1]);
      w.medium = f[2].as<std::string>();
    } else {
      EXPECT_EQ(w.tag, "AllBlocksCleared");
      EXPECT_EQ(e.via.array.size, 1u);
    }
    b.events.push_back(std::move(w));
  }
  return b;
}

// One ZMQ message: topic, 8-byte big-endian sequence number, payload.
struct Message {
  std::string topic;
  uint64_t seq = 0;
  WireBatch batch;
};

// The next message, or nullopt when the socket's rcvtimeo passed first.
inline std::optional<Message> receive(zmq::socket_t& sub) {
  std::vector<zmq::message_t> parts;
  zmq::message_t part;
  do {
    if (!sub.recv(part)) return std::nullopt;  // timed out
    parts.push_back(std::move(part));
  } while (sub.get(zmq::sockopt::rcvmore));
  EXPECT_EQ(parts.size(), 3u);
  if (parts.size() != 3) return std::nullopt;
  Message m;
  m.topic = parts[0].to_string();
  EXPECT_EQ(parts[1].size(), 8u);
  for (size_t i = 0; i < 8; ++i) m.seq = (m.seq << 8) | static_cast<const uint8_t*>(parts[1].data())[i];
  m.batch = decode(parts[2].to_string_view());
  return m;
}

// ZMQ's slow joiner: messages published before the subscription reaches the PUB are lost. With
// `sub` connected and subscribed to a fresh publisher (nothing else using it yet), publishes
// AllBlocksCleared probes until one arrives, then drains the rest. Returns the sequence number of
// the last probe (every later message follows it), or nullopt if the subscription never became
// live. Leaves the socket's rcvtimeo at 200 ms.
inline std::optional<uint64_t> sync_subscriber(EventPublisher& pub, zmq::socket_t& sub,
                                               std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  using namespace std::chrono_literals;
  sub.set(zmq::sockopt::rcvtimeo, 50);
  std::optional<uint64_t> last_seq;
  uint64_t probes = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!last_seq && std::chrono::steady_clock::now() < deadline) {
    pub.all_blocks_cleared();
    pub.end_of_step();
    ++probes;
    if (auto m = receive(sub)) {
      EXPECT_EQ(m->topic, pub.config().topic);
      EXPECT_LT(m->seq, probes);  // sequence numbers start at 0
      last_seq = m->seq;
    }
  }
  if (!last_seq) return std::nullopt;
  while (pub.messages_sent() < probes && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  sub.set(zmq::sockopt::rcvtimeo, 200);
  while (auto m = receive(sub)) {
    EXPECT_EQ(m->seq, *last_seq + 1);
    last_seq = m->seq;
  }
  EXPECT_EQ(*last_seq, probes - 1);
  if (*last_seq != probes - 1) return std::nullopt;
  return last_seq;
}

}  // namespace llmd::kv::wire
