#include "common/block_hash.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <unordered_set>

namespace llmd {
namespace {

std::vector<int32_t> iota_tokens(int32_t first, int32_t n) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

// Known answers computed outside this code: the byte layout of block_hash.hpp assembled with
// Python's struct module and hashed by libxxhash's XXH3_128bits. If one of these fails, the key
// layout changed and every router, tier and peer server computing keys must change with it.
TEST(BlockHash, KnownAnswers) {
  const BlockHash root = root_hash("llama-3-8b-q8_0", "");
  EXPECT_EQ(root, (BlockHash{0x59c3bbdd8ccf8521ULL, 0x64bb8d8575fff624ULL}));
  EXPECT_EQ(root_hash("llama-3-8b-q8_0", "tenant-a"),
            (BlockHash{0x788cb050322bc3d5ULL, 0x895be73b763d212aULL}));
  const BlockHash b0 = block_hash(root, iota_tokens(0, 16));
  EXPECT_EQ(b0, (BlockHash{0xf72d86dfeace98e4ULL, 0x0a19a62de8eb1e62ULL}));
  EXPECT_EQ(block_hash(b0, iota_tokens(16, 16)), (BlockHash{0xcbd9013c19cd2df8ULL, 0xce180d5468f4c264ULL}));
  const std::vector<int32_t> extremes = {-1, 0, 2147483647, -2147483647 - 1};
  EXPECT_EQ(block_hash(root, extremes), (BlockHash{0x6afa9eb3a3702031ULL, 0x5b5cc91cacf891a4ULL}));
  const std::vector<uint8_t> extra = {0xde, 0xad, 0xbe, 0xef};
  EXPECT_EQ(block_hash(root, iota_tokens(1, 4), extra),
            (BlockHash{0x8dd719b1436273e5ULL, 0x960080b0ec95b120ULL}));
  // Long enough to take the streaming path instead of the stack buffer.
  EXPECT_EQ(block_hash(root, iota_tokens(1000, 200)),
            (BlockHash{0x2bdc2e38f20dccefULL, 0x89c8fe926fdf99d4ULL}));
}

TEST(BlockHash, ChainsThroughParents) {
  const BlockHash root = root_hash("m", "");
  const auto tokens = iota_tokens(7, 40);  // 2 full blocks of 16 and 8 left over
  std::vector<BlockHash> hs;
  hash_blocks(root, tokens, 16, hs);
  ASSERT_EQ(hs.size(), 2u);
  EXPECT_EQ(hs[0], block_hash(root, std::span(tokens).subspan(0, 16)));
  EXPECT_EQ(hs[1], block_hash(hs[0], std::span(tokens).subspan(16, 16)));
  // The same tokens under another parent are another block.
  EXPECT_NE(block_hash(hs[0], std::span(tokens).subspan(0, 16)), hs[0]);
  // A different first block changes every key after it.
  auto other = tokens;
  other[3] += 1;
  std::vector<BlockHash> hs2;
  hash_blocks(root, other, 16, hs2);
  EXPECT_NE(hs2[0], hs[0]);
  EXPECT_NE(hs2[1], hs[1]);
}

TEST(BlockHash, PartialBlockHasNoKey) {
  const BlockHash root = root_hash("m", "");
  std::vector<BlockHash> hs = {BlockHash{1, 2}};  // replaced, not appended to
  hash_blocks(root, iota_tokens(0, 15), 16, hs);
  EXPECT_TRUE(hs.empty());
  hash_blocks(root, iota_tokens(0, 16), 16, hs);
  EXPECT_EQ(hs.size(), 1u);
  hash_blocks(root, iota_tokens(0, 47), 16, hs);
  EXPECT_EQ(hs.size(), 2u);
  // The key of a full block does not depend on what follows it.
  std::vector<BlockHash> longer;
  hash_blocks(root, iota_tokens(0, 48), 16, longer);
  ASSERT_EQ(longer.size(), 3u);
  EXPECT_EQ(longer[0], hs[0]);
  EXPECT_EQ(longer[1], hs[1]);
}

TEST(BlockHash, ExtendHashesOnlyNewBlocks) {
  const BlockHash root = root_hash("m", "s");
  const auto tokens = iota_tokens(100, 80);
  std::vector<BlockHash> all;
  hash_blocks(root, tokens, 16, all);
  std::vector<BlockHash> grown;
  for (size_t n = 0; n <= tokens.size(); ++n)
    extend_block_hashes(root, std::span(tokens).first(n), 16, grown);
  EXPECT_EQ(grown, all);
}

TEST(BlockHash, SaltAndFingerprintIsolate) {
  EXPECT_NE(root_hash("m", ""), root_hash("m", "tenant"));
  EXPECT_NE(root_hash("m", "a"), root_hash("m", "b"));
  EXPECT_NE(root_hash("m1", ""), root_hash("m2", ""));
  // Length prefixes: moving bytes between fingerprint and salt gives another root.
  EXPECT_NE(root_hash("ab", "c"), root_hash("a", "bc"));
  EXPECT_NE(root_hash("abc", ""), root_hash("", "abc"));
  const auto tokens = iota_tokens(0, 32);
  std::vector<BlockHash> a, b;
  hash_blocks(root_hash("m", "tenant-a"), tokens, 16, a);
  hash_blocks(root_hash("m", "tenant-b"), tokens, 16, b);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NE(a[i], b[i]);
}

TEST(BlockHash, ExtraKeysChangeTheKey) {
  const BlockHash root = root_hash("m", "");
  const auto tokens = iota_tokens(0, 16);
  const std::vector<uint8_t> img1 = {1, 2, 3}, img2 = {1, 2, 4};
  EXPECT_NE(block_hash(root, tokens), block_hash(root, tokens, img1));
  EXPECT_NE(block_hash(root, tokens, img1), block_hash(root, tokens, img2));
  EXPECT_EQ(block_hash(root, tokens, img1), block_hash(root, tokens, img1));
}

TEST(BlockHash, TextAndWireForms) {
  const BlockHash h{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  EXPECT_EQ(to_hex(h), "fedcba98765432100123456789abcdef");
  EXPECT_EQ(fmt::format("{}", h), to_hex(h));
  EXPECT_EQ(parse_block_hash(to_hex(h)), h);
  EXPECT_EQ(parse_block_hash("FEDCBA98765432100123456789ABCDEF"), h);
  EXPECT_FALSE(parse_block_hash("fedcba98765432100123456789abcde"));
  EXPECT_FALSE(parse_block_hash("fedcba98765432100123456789abcdeg"));
  const auto w = to_wire_bytes(h);
  EXPECT_EQ(w[0], 0xef);  // lo first, little-endian
  EXPECT_EQ(w[7], 0x01);
  EXPECT_EQ(w[8], 0x10);  // then hi
  EXPECT_EQ(w[15], 0xfe);
  EXPECT_EQ(from_wire_bytes(w), h);
  EXPECT_FALSE(from_wire_bytes(std::span(w).first(15)));
}

TEST(BlockHash, HashableAndDistinct) {
  const BlockHash root = root_hash("m", "");
  const auto tokens = iota_tokens(0, 16 * 1000);
  std::vector<BlockHash> hs;
  hash_blocks(root, tokens, 16, hs);
  std::unordered_set<BlockHash> set(hs.begin(), hs.end());
  EXPECT_EQ(set.size(), hs.size());
}

TEST(BlockHash, RejectsBadBlockSize) {
  std::vector<BlockHash> hs;
  EXPECT_ANY_THROW(hash_blocks(root_hash("m", ""), iota_tokens(0, 16), 0, hs));
}

}  // namespace
}  // namespace llmd
