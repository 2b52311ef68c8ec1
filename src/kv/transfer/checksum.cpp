#include "kv/transfer/checksum.hpp"

#include <xxhash.h>

#include "engine/cpu/matmul.hpp"

namespace llmd::kv::transfer {
namespace {

using Fn = uint64_t (*)(const void*, std::size_t, uint64_t);

uint64_t xxh3_64_library(const void* data, std::size_t size, uint64_t seed) {
  return XXH3_64bits_withSeed(data, size, seed);
}

Fn pick() {
  switch (engine::cpu::detect_isa()) {
    case engine::cpu::Isa::kAvx512:
      return xxh3_64_avx512;
    case engine::cpu::Isa::kAvx2:
      return xxh3_64_avx2;
    default:
      return xxh3_64_library;
  }
}

}  // namespace

uint64_t xxh3_64(const void* data, std::size_t size, uint64_t seed) {
  static const Fn fn = pick();
  return fn(data, size, seed);
}

}  // namespace llmd::kv::transfer
