#pragma once
// Decoder of one KV-events ZMQ message in vLLM's format (wire format in kv/kv_event_batch.hpp):
// what the router runs on every message a server publishes.
//
// The bytes come from the network, so a malformed or hostile message must end in an error, never
// in a crash or an allocation its size does not justify. That is why this is built on msgpack-cxx's
// visitor parser (msgpack::parse) rather than msgpack::unpack: unpack materialises a 24-byte
// msgpack::object per element and allocates a whole array as soon as its header declares a length,
// so a 5-byte header declaring 2^32 elements asks for 100 GB (unpack_limit only caps it at a
// fixed number). The visitor builds nothing: every value is type-checked where it arrives, and
// the only memory that grows is the output below, at most one element per element actually
// present in the payload. Depth and payload size are bounded by KvEventDecoderConfig.
//
// Leniency, for other publishers (vLLM versions, llm-d tools):
//   - a block hash is a 16-byte bin (u64le lo ‖ u64le hi, we keep lo) or a msgpack integer (vLLM's
//     int hashes; a negative one is taken as its two's-complement bits);
//   - fields a known event or the payload may carry after the ones named here are skipped, and so
//     are trailing optional fields that are absent (msgspec omit_defaults): BlockStored needs
//     [tag, hashes, parent, token_ids, block_size], BlockRemoved [tag, hashes];
//   - an event with an unknown tag is skipped and counted (unknown_events), not an error.
//
// Threading: a decoder is one thread's scratch (its buffers are reused from message to message).
#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kv/kv_event_batch.hpp"

namespace llmd::kv {

struct KvEventDecoderConfig {
  static constexpr std::size_t kDefaultMaxPayloadBytes = 16u << 20;
  static constexpr uint32_t kDefaultMaxDepth = 8;
  static constexpr std::size_t kDefaultMaxMediumBytes = 64;
  // A payload larger than this is rejected before parsing. A message is one engine step's events;
  // a step that stores a whole 128K-token prompt is ~1 MB.
  std::size_t max_payload_bytes = kDefaultMaxPayloadBytes;
  // Nesting of arrays and maps; the format itself needs 4 (payload, events, event, hash list).
  uint32_t max_depth = kDefaultMaxDepth;
  std::size_t max_medium_bytes = kDefaultMaxMediumBytes;
};

// One decoded event. kCleared has no hashes.
struct KvEvent {
  KvEventBatch::Kind kind = KvEventBatch::Kind::kCleared;
  std::vector<uint64_t> hashes;    // low 64 bits of each block key, in wire order
  std::optional<uint64_t> parent;  // BlockStored's parent key (low 64 bits), when not nil
  int32_t block_size = 0;          // BlockStored
  uint32_t token_count = 0;        // BlockStored: number of token ids (checked, not kept)
  std::string medium;              // as sent; empty when nil or absent
};

// One decoded message. `events` points into the decoder and is valid until its next decode.
struct KvEventMessage {
  std::string topic;
  uint64_t seq = 0;
  double ts = 0;
  std::optional<int32_t> dp_rank;
  uint32_t unknown_events = 0;  // events with an unknown tag, skipped
  std::span<const KvEvent> events;
};

// The sequence-number frame: exactly 8 bytes, big-endian.
std::expected<uint64_t, std::string> decode_sequence(std::string_view frame);

// "kv@<host:port>@<model>" (llm-d's convention) split at its first two '@'; nullopt when the topic
// has fewer than two. The views point into `topic`.
struct KvTopic {
  std::string_view prefix, host_port, model;
};
std::optional<KvTopic> parse_topic(std::string_view topic);

class KvEventDecoder {
 public:
  explicit KvEventDecoder(KvEventDecoderConfig config = {});

  // A whole ZMQ message: frames [topic, sequence, payload]. On success message() holds it; on
  // error the reason is one line and message() is unspecified.
  std::expected<void, std::string> decode(std::span<const std::string_view> frames);
  // The msgpack payload frame alone (message().topic and seq are left as they were).
  std::expected<void, std::string> decode_payload(std::string_view payload);

  const KvEventMessage& message() const { return message_; }

 private:
  struct Visitor;

  KvEventDecoderConfig config_;
  KvEventMessage message_;
  // Events kept across messages so their hash vectors keep their capacity; the first n_events_
  // are the current message's.
  std::vector<KvEvent> events_;
  std::size_t n_events_ = 0;
};

}  // namespace llmd::kv
