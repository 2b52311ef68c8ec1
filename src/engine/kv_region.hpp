#pragma once
// Where a backend's KV bytes are, block by block, for P/D disaggregation: a decode server copies a
// prefill server's blocks into its own (src/kv/transfer). A block is n_segments runs of
// segment_bytes, one per K or V pool of a layer (cpu backend: K0, V0, K1, V1, ...; sim backend: one
// run of token ids); run s of block b is at s * segment_stride + b * segment_bytes of one arena.
// Two servers may exchange blocks only when their layouts are equal: the model fingerprint covers
// neither block size nor KV dtype.
#include <cstddef>
#include <cstdint>

namespace llmd::engine {

struct KvLayout {
  uint32_t n_segments = 0;      // cpu: 2 * n_layer; sim: 1
  uint64_t segment_bytes = 0;   // one block in one segment
  uint64_t segment_stride = 0;  // bytes between segment s and s+1 in the arena (>= n_blocks * segment_bytes)
  int32_t n_blocks = 0;
  int32_t block_size = 0;  // tokens per block
  uint8_t dtype = 0;       // kv::transfer::KvDtype: f16, f32, sim tokens

  uint64_t block_bytes() const { return uint64_t{n_segments} * segment_bytes; }
  uint64_t offset(int32_t b, uint32_t s) const {
    return uint64_t{s} * segment_stride + static_cast<uint64_t>(b) * segment_bytes;
  }
  // Bytes from the arena's start to the end of its last segment.
  uint64_t arena_bytes() const { return n_segments == 0 ? 0 : offset(n_blocks, n_segments - 1); }
  bool has_block(int64_t b) const { return b >= 0 && b < n_blocks; }

  friend bool operator==(const KvLayout&, const KvLayout&) = default;
};

// A backend's KV arena. Its blocks change only in forward() of a batch that holds them, so a block
// the engine holds and no batch computes (pinned for a decode server, or being pulled into) may be
// read or written from another thread.
struct KvRegion {
  KvLayout layout;
  std::byte* base = nullptr;  // layout.arena_bytes() bytes
};

}  // namespace llmd::engine
