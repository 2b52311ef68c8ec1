#include "kv/transfer/layout.hpp"

#include <cstring>
#include <limits>

#include "common/error.hpp"
#include "kv/transfer/checksum.hpp"

namespace llmd::kv::transfer {

void check_layout(const KvLayout& l) {
  if (l.n_segments == 0 || l.segment_bytes == 0 || l.n_blocks <= 0 || l.block_size <= 0)
    fail("KV layout: empty ({} segments of {} bytes, {} blocks of {} tokens)", l.n_segments, l.segment_bytes,
         l.n_blocks, l.block_size);
  if (l.dtype > static_cast<uint8_t>(KvDtype::kSimTokens)) fail("KV layout: unknown dtype {}", l.dtype);
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  if (l.segment_bytes > kMax / static_cast<uint64_t>(l.n_blocks) || l.segment_bytes > kMax / l.n_segments)
    fail("KV layout: sizes overflow");
  const uint64_t run = l.segment_bytes * static_cast<uint64_t>(l.n_blocks);
  if (l.n_segments > 1 && l.segment_stride < run)
    fail("KV layout: segment stride {} is less than a segment's {} bytes", l.segment_stride, run);
  if (l.n_segments > 1 && l.segment_stride > (kMax - run) / (l.n_segments - 1))
    fail("KV layout: sizes overflow");
}

void check_region(const KvRegion& region) {
  check_layout(region.layout);
  if (!region.base) fail("KV transfer: the region has no memory");
}

void copy_block(const KvLayout& layout, const std::byte* src_arena, int32_t sb, std::byte* dst_arena,
                int32_t db) {
  for (uint32_t s = 0; s < layout.n_segments; ++s)
    std::memcpy(dst_arena + layout.offset(db, s), src_arena + layout.offset(sb, s), layout.segment_bytes);
}

uint64_t block_checksum(const KvLayout& layout, const std::byte* arena, int32_t b) {
  uint64_t c = 0;
  for (uint32_t s = 0; s < layout.n_segments; ++s)
    c = xxh3_64(arena + layout.offset(b, s), layout.segment_bytes, c);
  return c;
}

}  // namespace llmd::kv::transfer
