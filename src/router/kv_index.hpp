#pragma once
// The router's view of which endpoint holds which KV block, fed by the servers' KV events (vLLM's
// BlockStored / BlockRemoved / AllBlocksCleared) and read by precise-prefix-cache-scorer: for a
// request's chain of block keys, the longest run of consecutive blocks from the first that each
// endpoint holds, weighted by the tier (medium) each block lives in.
//
// Keys are the low 64 bits of the 128-bit block keys (DESIGN.md "Keys of the KV cache"): the
// router hashes prompts the same way, and 64 uniform bits make a false match among 10^7 indexed
// blocks about 10^-5 likely per lookup.
//
// Threading: every method is safe to call concurrently (event subscribers write, schedulers
// read); the table is sharded by key so writers and readers rarely meet on one lock.
//
// Layout (kv_index.cpp), for the scale target of 10^7 (block, endpoint) entries on 10^3 endpoints
// in < 40 bytes each: per shard one open-addressing table of 16-byte slots {key, two holder
// words}, a holder word being endpoint id (28 bits) and a bit mask of media (4 bits); a block on
// more than two endpoints moves its sorted holder words to a size-classed pool of the shard (a
// 12-byte header with the set's fingerprint, then 4 bytes per endpoint, classes of 3 << c). So a
// block costs 16 bytes / load factor (0.53..0.8) for its first two endpoints and 4-8 bytes for
// each further one: ~21 bytes per entry measured at 10^7 entries (bench/kv_index_bench.cpp).
// Endpoint ids must be < 2^28 - 1; events for larger ids are ignored.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace llmd::router {

using EndpointId = uint32_t;  // dense ids handed out by the endpoint set

// Where a block lives; vLLM's "GPU" is the server's own KV pool (llmd says "GPU" on CPU too).
enum class Medium : uint8_t { kGpu = 0, kCpu = 1, kDisk = 2, kOther = 3 };
Medium parse_medium(std::string_view name);  // "GPU"/"gpu"/null → kGpu, "CPU", "DISK"; else kOther

struct KvIndexConfig {
  static constexpr std::size_t kDefaultShards = 64;
  std::size_t shards = kDefaultShards;  // a power of two
  // Score weight per medium (llm-d: gpu 1.0, cpu 0.8); indexed by Medium.
  double medium_weight[4] = {1.0, 0.8, 0.5, 0.5};
};

class KvIndex {
 public:
  explicit KvIndex(KvIndexConfig config = {});
  ~KvIndex();
  KvIndex(const KvIndex&) = delete;
  KvIndex& operator=(const KvIndex&) = delete;

  void stored(EndpointId ep, std::span<const uint64_t> keys, Medium medium);
  void removed(EndpointId ep, std::span<const uint64_t> keys, Medium medium);
  void cleared(EndpointId ep);  // AllBlocksCleared, or the endpoint left

  // out[i] = Σ over blocks j < L_i of weight(medium of block j on candidates[i]), where L_i is the
  // number of consecutive keys from keys[0] that candidates[i] holds (in any medium; the fastest
  // counts). out.size() must equal candidates.size(). Stops reading keys once no candidate is
  // still matching.
  void longest_prefix(std::span<const uint64_t> keys, std::span<const EndpointId> candidates,
                      std::span<double> out) const;

  std::size_t entries() const;       // (block, endpoint) pairs held
  std::size_t memory_bytes() const;  // heap bytes of the table, for the scale benchmark

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmd::router
