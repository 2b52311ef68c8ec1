#pragma once
// Keys of the KV cache (DESIGN.md "Keys of the KV cache"). One key names a block in the server's
// prefix cache, in KV events, in every tier and in transfers, and the router computes it from the
// prompt alone, so the byte layout below is a wire format: changing it breaks every peer silently.
// The known-answer tests in tests/common/block_hash_test.cpp pin it.
//
// All hashes are XXH3_128bits with seed 0 (xxHash >= 0.8.0, whose XXH3 output is frozen).
//
// root_hash(fingerprint, salt) hashes
//     u64le(len(fingerprint)) ‖ fingerprint bytes ‖ u64le(len(salt)) ‖ salt bytes
//   The lengths make ("ab","c") and ("a","bc") different roots. The fingerprint should name
//   everything that changes KV contents (weights, KV dtype, block size ...): keys of two servers
//   are comparable exactly when their fingerprints are equal.
//
// block_hash(parent, tokens, extra) hashes
//     u64le(parent.lo) ‖ u64le(parent.hi) ‖ i32le(tokens[0]) ‖ ... ‖ i32le(tokens[n-1]) ‖ extra bytes
//   Nothing separates tokens from extra: that is unambiguous because a key is only ever computed
//   for a full block, whose token count (the block size) is fixed by the fingerprint.
//
// A BlockHash is the XXH128_hash_t {low64, high64} as {lo, hi}. Text form (to_hex, fmt "{}"):
// 32 lowercase hex digits, hi then lo, i.e. XXH128's canonical big-endian form. Wire form in KV
// events and transfers (to_wire_bytes): 16 bytes, u64le(lo) ‖ u64le(hi).
#include <fmt/format.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace llmd {

struct BlockHash {
  uint64_t lo = 0;
  uint64_t hi = 0;

  friend bool operator==(const BlockHash&, const BlockHash&) = default;
};

// Key of the (virtual) block before the first one: isolates models and tenants (cache_salt).
BlockHash root_hash(std::string_view model_fingerprint, std::string_view cache_salt);

// Key of one full block given its parent's key (root_hash for the first block).
BlockHash block_hash(const BlockHash& parent, std::span<const int32_t> tokens,
                     std::span<const uint8_t> extra = {});

// Replaces `out` with the keys of every full block of `tokens` (a trailing partial block has
// none). Reuses out's capacity, so a caller that keeps the vector allocates nothing per request.
void hash_blocks(const BlockHash& root, std::span<const int32_t> tokens, int32_t block_size,
                 std::vector<BlockHash>& out);

// Appends the keys of the full blocks of `tokens` past the first out.size() ones, taking `out` as
// the keys of those (a sequence's keys grow this way as decode fills blocks, hashing each once).
void extend_block_hashes(const BlockHash& root, std::span<const int32_t> tokens, int32_t block_size,
                         std::vector<BlockHash>& out);

std::string to_hex(const BlockHash& h);
std::optional<BlockHash> parse_block_hash(std::string_view hex);  // inverse of to_hex

std::array<uint8_t, 16> to_wire_bytes(const BlockHash& h);
std::optional<BlockHash> from_wire_bytes(std::span<const uint8_t> bytes);  // needs exactly 16

// For unordered_map: the key is already uniformly distributed, so its low word is a fine hash.
struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const noexcept { return static_cast<size_t>(h.lo); }
};

}  // namespace llmd

template <>
struct std::hash<llmd::BlockHash> : llmd::BlockHashHasher {};

template <>
struct fmt::formatter<llmd::BlockHash> : fmt::formatter<std::string_view> {
  auto format(const llmd::BlockHash& h, fmt::format_context& ctx) const {
    const std::string s = llmd::to_hex(h);
    return fmt::formatter<std::string_view>::format(std::string_view(s), ctx);
  }
};
