#pragma once
// A backend's KV arena as the transfer engine uses it: checks, block copies and checksums. The
// layout itself is the engine's (engine/kv_region.hpp); equal layouts are checked in the handshake.
#include <cstddef>
#include <cstdint>

#include "engine/kv_region.hpp"

namespace llmd::kv::transfer {

enum class KvDtype : uint8_t { kF16 = 0, kF32 = 1, kSimTokens = 2 };

using engine::KvLayout;
using engine::KvRegion;

// Throws llmd::Error when the layout cannot describe an arena (zero sizes, segments that overlap,
// an unknown dtype, sizes whose products overflow): a local layout is checked once, at start.
void check_layout(const KvLayout& layout);
// check_layout, and a region with memory behind it: what every backend and the server check first.
void check_region(const KvRegion& region);

// Copies block sb of one arena to block db of another of the same layout, segment by segment.
void copy_block(const KvLayout& layout, const std::byte* src_arena, int32_t sb, std::byte* dst_arena,
                int32_t db);

// The block's integrity check: c = XXH3_64bits_withSeed(segment s, segment_bytes, c) for s = 0.., c
// starting at 0. Chained one-shot hashes need no XXH3 state and read each byte once.
uint64_t block_checksum(const KvLayout& layout, const std::byte* arena, int32_t b);

}  // namespace llmd::kv::transfer
