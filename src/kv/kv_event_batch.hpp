#pragma once
// One batch of KV events (what an engine step changed in the prefix cache) and its vLLM wire form.
//
// Wire format (vLLM's ZmqEventPublisher, msgspec array_like structs with tag):
//   ZMQ multipart message [topic bytes, u64be sequence number, msgpack payload], one per batch,
//   sequence numbers 0, 1, 2 ... per publisher.
//   payload = [ts, [event ...]] or [ts, [event ...], dp_rank] when a data-parallel rank is set;
//     ts is a float64 (seconds since the Unix epoch, when the batch was ended).
//   event   = ["BlockStored", [hash ...], parent_hash | nil, [token_id ...], block_size, lora_id, medium]
//           | ["BlockRemoved", [hash ...], medium]
//           | ["AllBlocksCleared"]
//   hash    = msgpack bin of 16 bytes, to_wire_bytes(): u64le(lo) ‖ u64le(hi). vLLM's
//             ExternalBlockHash is `bytes | int` (bytes by default); consumers written for vLLM's
//             64-bit int hashes (llm-d's kv-cache indexer) reduce bytes to the big-endian value of
//             their last 8 bytes, i.e. byteswap(hi): still a usable key, but not the full one.
//   lora_id = nil (no LoRA yet). medium = the tier the publisher speaks for (see
//             EventPublisherConfig::medium).
//   token_ids hold hashes.size() * block_size ids; a BlockStored's hashes form a chain whose first
//   parent is parent_hash (nil for the first block of a sequence).
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/block_hash.hpp"

namespace llmd::kv {

// Flat storage (three vectors, reused across batches) so recording an event allocates nothing in
// steady state. Adjacent events that continue each other are coalesced as vLLM does: a BlockStored
// whose parent is the previous BlockStored's last hash extends it, and so do adjacent BlockRemoved.
class KvEventBatch {
 public:
  enum class Kind : uint8_t { kStored, kRemoved, kCleared };
  struct Event {
    Kind kind = Kind::kCleared;
    bool has_parent = false;
    int32_t block_size = 0;
    uint32_t hash_begin = 0, hash_count = 0;
    uint32_t token_begin = 0, token_count = 0;
    BlockHash parent;
  };

  void add_stored(std::span<const BlockHash> hashes, const BlockHash* parent,
                  std::span<const int32_t> token_ids, int32_t block_size);
  void add_removed(std::span<const BlockHash> hashes);
  void add_cleared();
  void clear();

  bool empty() const { return events_.empty(); }
  // What the bounded queue counts: one per block named, at least one per event.
  size_t weight() const { return weight_; }
  const std::vector<Event>& events() const { return events_; }
  std::span<const BlockHash> hashes(const Event& e) const {
    return {hashes_.data() + e.hash_begin, e.hash_count};
  }
  std::span<const int32_t> tokens(const Event& e) const {
    return {tokens_.data() + e.token_begin, e.token_count};
  }

 private:
  std::vector<Event> events_;
  std::vector<BlockHash> hashes_;
  std::vector<int32_t> tokens_;
  size_t weight_ = 0;
};

// The msgpack payload of one message, appended to `out` (cleared first).
void encode_payload(const KvEventBatch& batch, double ts, std::optional<int32_t> dp_rank,
                    std::string_view medium, std::string& out);
// The sequence number frame: 8 bytes, big-endian.
std::string encode_sequence(uint64_t seq);

}  // namespace llmd::kv
