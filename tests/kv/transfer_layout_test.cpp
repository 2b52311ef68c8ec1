#include "kv/transfer/layout.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include <xxhash.h>

#include "common/error.hpp"
#include "kv/transfer/checksum.hpp"
#include "kv/transfer/pin_registry.hpp"

namespace llmd::kv::transfer {
namespace {

KvLayout layout() {
  return {.n_segments = 4,
          .segment_bytes = 96,
          .segment_stride = 10 * 96,
          .n_blocks = 10,
          .block_size = 16,
          .dtype = 0};
}

TEST(TransferLayout, OffsetsAndSizes) {
  const KvLayout l = layout();
  EXPECT_EQ(l.block_bytes(), 4u * 96);
  EXPECT_EQ(l.offset(3, 2), 2u * 960 + 3 * 96);
  EXPECT_EQ(l.arena_bytes(), 4u * 960);
  EXPECT_NO_THROW(check_layout(l));
  KvLayout bad = l;
  bad.segment_stride = 9 * 96;  // segments would overlap
  EXPECT_THROW(check_layout(bad), Error);
  bad = l;
  bad.n_segments = 0;
  EXPECT_THROW(check_layout(bad), Error);
  bad = l;
  bad.dtype = 9;
  EXPECT_THROW(check_layout(bad), Error);
}

TEST(TransferLayout, CopyBlockAndChecksum) {
  const KvLayout l = layout();
  std::vector<std::byte> a(l.arena_bytes()), b(l.arena_bytes());
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<std::byte>(i * 7 + 3);
  copy_block(l, a.data(), 2, b.data(), 5);
  for (uint32_t s = 0; s < l.n_segments; ++s)
    EXPECT_EQ(std::memcmp(a.data() + l.offset(2, s), b.data() + l.offset(5, s), l.segment_bytes), 0);
  EXPECT_EQ(block_checksum(l, a.data(), 2), block_checksum(l, b.data(), 5));
  EXPECT_NE(block_checksum(l, a.data(), 2), block_checksum(l, a.data(), 3));
  b[l.offset(5, 3) + 95] ^= std::byte{1};  // the last byte of the last segment counts
  EXPECT_NE(block_checksum(l, a.data(), 2), block_checksum(l, b.data(), 5));
}

TEST(TransferPinRegistry, LeasesKeysAndUnpin) {
  PinRegistry reg;
  reg.pin("r", {4, 9}, {{1, 1}, {2, 2}});
  std::vector<BlockHash> keys;
  const std::vector<uint32_t> want = {9, 4};
  {
    auto lease = reg.lease("r", want, keys);
    ASSERT_TRUE(lease);
    EXPECT_EQ(keys, (std::vector<BlockHash>{{2, 2}, {1, 1}}));
    EXPECT_FALSE(reg.unpin("r"));  // being sent
  }
  EXPECT_TRUE(reg.unpin("r"));
  EXPECT_FALSE(reg.pinned("r"));
  EXPECT_TRUE(reg.unpin("r"));  // already gone
  EXPECT_EQ(reg.lease("r", want, keys).error(), XferError::kUnknownRequest);
  reg.pin("s", {4}, {{1, 1}});
  const std::vector<uint32_t> other = {4, 5};
  EXPECT_EQ(reg.lease("s", other, keys).error(), XferError::kBadBlock);
  EXPECT_TRUE(reg.unpin("s"));  // a refused lease holds nothing
  EXPECT_THROW(reg.pin("t", {1, 2}, {{1, 1}}), Error);
}

}  // namespace
}  // namespace llmd::kv::transfer

namespace llmd::kv::transfer {
namespace {

// The AVX2 and AVX-512 builds of XXH3 are the library's function, byte for byte: a block checksummed
// on one machine verifies on another whatever either's vector unit.
TEST(TransferChecksum, EveryIsaBuildGivesTheLibrarysValue) {
  std::vector<unsigned char> buf((24 << 10) + 3);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(i * 131 + (i >> 7));
  const bool avx2 = __builtin_cpu_supports("avx2");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  for (std::size_t n : {0u, 1u, 16u, 17u, 128u, 129u, 240u, 241u, 1000u, 24u << 10, (24u << 10) + 3})
    for (uint64_t seed : {0ull, 1ull, 0x9e3779b97f4a7c15ull}) {
      const uint64_t want = XXH3_64bits_withSeed(buf.data(), n, seed);
      EXPECT_EQ(xxh3_64(buf.data(), n, seed), want) << n;
      if (avx2) EXPECT_EQ(xxh3_64_avx2(buf.data(), n, seed), want) << n;
      if (avx512) EXPECT_EQ(xxh3_64_avx512(buf.data(), n, seed), want) << n;
    }
}

}  // namespace
}  // namespace llmd::kv::transfer
