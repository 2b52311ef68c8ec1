#pragma once
// Where a block's KV bytes are in a server's arena, as the transfer engine sees them (issue 6 design §1).
// A block is n_segments runs of segment_bytes, one per K or V pool of a layer (cpu backend: K0,V0,K1,
// V1,...; sim backend: one run of token ids); run s of block b is at s*segment_stride + b*segment_bytes.
// Two servers may exchange blocks only when their layouts are equal (checked in the handshake): the
// model fingerprint covers neither block size nor KV dtype.
#include <cstddef>
#include <cstdint>

namespace llmd::kv::transfer {

enum class KvDtype : uint8_t { kF16 = 0, kF32 = 1, kSimTokens = 2 };

struct KvLayout {
  uint32_t n_segments = 0;      // cpu: 2*n_layer; sim: 1
  uint64_t segment_bytes = 0;   // one block in one segment
  uint64_t segment_stride = 0;  // bytes between segment s and s+1 in the arena (>= n_blocks*segment_bytes)
  int32_t n_blocks = 0;
  int32_t block_size = 0;  // tokens per block
  uint8_t dtype = 0;       // a KvDtype

  uint64_t block_bytes() const { return uint64_t{n_segments} * segment_bytes; }
  uint64_t offset(int32_t b, uint32_t s) const {
    return uint64_t{s} * segment_stride + static_cast<uint64_t>(b) * segment_bytes;
  }
  // Bytes from the arena's start to the end of its last segment.
  uint64_t arena_bytes() const { return n_segments == 0 ? 0 : offset(n_blocks, n_segments - 1); }
  bool has_block(int64_t b) const { return b >= 0 && b < n_blocks; }

  friend bool operator==(const KvLayout&, const KvLayout&) = default;
};

// Throws llmd::Error when the layout cannot describe an arena (zero sizes, segments that overlap,
// an unknown dtype, sizes whose products overflow): a local layout is checked once, at start.
void check_layout(const KvLayout& layout);

// The memory a transfer endpoint serves or fills: the engine's arena (registered once).
struct KvRegion {
  KvLayout layout;
  std::byte* base = nullptr;  // layout.arena_bytes() bytes
};

// Copies block sb of one arena to block db of another of the same layout, segment by segment.
void copy_block(const KvLayout& layout, const std::byte* src_arena, int32_t sb, std::byte* dst_arena,
                int32_t db);

// The block's integrity check: c = XXH3_64bits_withSeed(segment s, segment_bytes, c) for s = 0.., c
// starting at 0. Chained one-shot hashes need no XXH3 state and read each byte once.
uint64_t block_checksum(const KvLayout& layout, const std::byte* arena, int32_t b);

}  // namespace llmd::kv::transfer
