// xxhash's inline implementation, compiled for AVX2 (CMake's *_avx2.cpp flags): XXH_INLINE_ALL
// makes every XXH symbol static to this file, so it cannot clash with the library or the other build.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "kv/transfer/checksum.hpp"

namespace llmd::kv::transfer {

uint64_t xxh3_64_avx2(const void* data, std::size_t size, uint64_t seed) {
  return XXH3_64bits_withSeed(data, size, seed);
}

}  // namespace llmd::kv::transfer
