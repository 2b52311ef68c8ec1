#include "common/block_hash.hpp"

#include <xxhash.h>

#include <bit>
#include <cstring>

#include "common/error.hpp"

namespace llmd {
namespace {

static_assert(XXH_VERSION_NUMBER >= 800, "XXH3's output is only frozen from xxHash 0.8.0");

void put_u64le(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t get_u64le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

BlockHash from_xxh(XXH128_hash_t h) {
  return {h.low64, h.high64};
}

// The bytes of block_hash's layout written at `p` (which has room for them); returns the end.
uint8_t* put_block(uint8_t* p, const BlockHash& parent, std::span<const int32_t> tokens,
                   std::span<const uint8_t> extra) {
  put_u64le(p, parent.lo);
  put_u64le(p + 8, parent.hi);
  p += 16;
  if constexpr (std::endian::native == std::endian::little) {
    if (!tokens.empty()) std::memcpy(p, tokens.data(), tokens.size_bytes());  // already the wire layout
    p += tokens.size_bytes();
  } else {
    for (int32_t v : tokens) {
      const auto u = static_cast<uint32_t>(v);
      for (int i = 0; i < 4; ++i) *p++ = static_cast<uint8_t>(u >> (8 * i));
    }
  }
  if (!extra.empty()) std::memcpy(p, extra.data(), extra.size());
  return p + extra.size();
}

void check_block_size(int32_t block_size) {
  if (block_size <= 0) fail("block size must be positive, got {}", block_size);
}

}  // namespace

BlockHash root_hash(std::string_view model_fingerprint, std::string_view cache_salt) {
  std::string buf(16 + model_fingerprint.size() + cache_salt.size(), '\0');
  auto* p = reinterpret_cast<uint8_t*>(buf.data());
  put_u64le(p, model_fingerprint.size());
  p += 8;
  if (!model_fingerprint.empty()) std::memcpy(p, model_fingerprint.data(), model_fingerprint.size());
  p += model_fingerprint.size();
  put_u64le(p, cache_salt.size());
  p += 8;
  if (!cache_salt.empty()) std::memcpy(p, cache_salt.data(), cache_salt.size());
  return from_xxh(XXH3_128bits(buf.data(), buf.size()));
}

BlockHash block_hash(const BlockHash& parent, std::span<const int32_t> tokens,
                     std::span<const uint8_t> extra) {
  // One-shot XXH3 over a contiguous copy: the streaming API would need XXH3_state_t, whose layout
  // is private to the xxhash build. Blocks up to 64 tokens (+64 extra bytes) use the stack; larger
  // ones a per-thread buffer that grows once.
  constexpr size_t kStack = 16 + 4 * 64 + 64;
  const size_t n = 16 + tokens.size_bytes() + extra.size();
  if (n <= kStack) {
    uint8_t buf[kStack];
    put_block(buf, parent, tokens, extra);
    return from_xxh(XXH3_128bits(buf, n));
  }
  thread_local std::vector<uint8_t> big;
  if (big.size() < n) big.resize(n);
  put_block(big.data(), parent, tokens, extra);
  return from_xxh(XXH3_128bits(big.data(), n));
}

void hash_blocks(const BlockHash& root, std::span<const int32_t> tokens, int32_t block_size,
                 std::vector<BlockHash>& out) {
  out.clear();
  extend_block_hashes(root, tokens, block_size, out);
}

void extend_block_hashes(const BlockHash& root, std::span<const int32_t> tokens, int32_t block_size,
                         std::vector<BlockHash>& out) {
  check_block_size(block_size);
  const size_t bs = static_cast<size_t>(block_size);
  const size_t n_full = tokens.size() / bs;
  if (out.size() > n_full) fail("{} block keys given for {} full blocks", out.size(), n_full);
  out.reserve(n_full);
  for (size_t i = out.size(); i < n_full; ++i) {
    const BlockHash& parent = i == 0 ? root : out[i - 1];
    out.push_back(block_hash(parent, tokens.subspan(i * bs, bs)));
  }
}

std::string to_hex(const BlockHash& h) {
  return fmt::format("{:016x}{:016x}", h.hi, h.lo);
}

std::optional<BlockHash> parse_block_hash(std::string_view hex) {
  if (hex.size() != 32) return std::nullopt;
  uint64_t words[2] = {0, 0};
  for (size_t i = 0; i < 32; ++i) {
    const char c = hex[i];
    uint64_t d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    words[i / 16] = (words[i / 16] << 4) | d;
  }
  return BlockHash{words[1], words[0]};
}

std::array<uint8_t, 16> to_wire_bytes(const BlockHash& h) {
  std::array<uint8_t, 16> b;
  put_u64le(b.data(), h.lo);
  put_u64le(b.data() + 8, h.hi);
  return b;
}

std::optional<BlockHash> from_wire_bytes(std::span<const uint8_t> bytes) {
  if (bytes.size() != 16) return std::nullopt;
  return BlockHash{get_u64le(bytes.data()), get_u64le(bytes.data() + 8)};
}

}  // namespace llmd
