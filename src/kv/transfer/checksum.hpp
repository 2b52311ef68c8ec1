#pragma once
// XXH3-64 of a buffer, with the widest vector unit the CPU has (and LLMD_ISA permits). Debian's
// libxxhash is built for SSE2 (16 GB/s on the dev machine); the same code built for AVX2 runs at 45
// GB/s and for AVX-512 at 62. A block transfer checksums every byte on both ends, so at SSE2 speed
// the two passes cost a quarter of a loopback transfer's time. All three give the same value.
#include <cstddef>
#include <cstdint>

namespace llmd::kv::transfer {

uint64_t xxh3_64(const void* data, std::size_t size, uint64_t seed);

// The per-ISA builds (checksum_avx2.cpp, checksum_avx512.cpp); xxh3_64 picks one once.
uint64_t xxh3_64_avx2(const void* data, std::size_t size, uint64_t seed);
uint64_t xxh3_64_avx512(const void* data, std::size_t size, uint64_t seed);

}  // namespace llmd::kv::transfer
