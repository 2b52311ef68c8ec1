#include "engine/block_allocator.hpp"

#include "common/error.hpp"

namespace llmd::engine {

BlockAllocator::BlockAllocator(int32_t n_blocks) : refs_(n_blocks, 0) {
  if (n_blocks <= 0) fail("KV cache needs at least one block, got {}", n_blocks);
  free_.reserve(n_blocks);
  for (int32_t b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
}

std::optional<int32_t> BlockAllocator::allocate() {
  if (free_.empty()) return std::nullopt;
  const int32_t b = free_.back();
  free_.pop_back();
  refs_[b] = 1;
  return b;
}

void BlockAllocator::ref(int32_t block) {
  if (refs_.at(block) <= 0) fail("KV block {} referenced while free", block);
  ++refs_[block];
}

void BlockAllocator::release(int32_t block) {
  if (refs_.at(block) <= 0) fail("KV block {} released while free", block);
  if (--refs_[block] == 0) free_.push_back(block);
}

}  // namespace llmd::engine
