#pragma once
// KV-cache metadata: which blocks of the pool are free and how many sequences hold each one.
// It never touches KV storage (that belongs to the compute backend), so the same allocator serves
// the CPU backend, the CUDA backend and the simulator.
#include <cstdint>
#include <optional>
#include <vector>

namespace llmd::engine {

class BlockAllocator {
 public:
  explicit BlockAllocator(int32_t n_blocks);

  // A free block with ref count 1, or nullopt when the pool is exhausted.
  std::optional<int32_t> allocate();
  // Takes another reference to a held block (prefix sharing).
  void ref(int32_t block);
  // Drops one reference; the block is free again when none are left.
  void release(int32_t block);

  int32_t n_total() const { return static_cast<int32_t>(refs_.size()); }
  int32_t n_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t ref_count(int32_t block) const { return refs_.at(block); }

 private:
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first (warm in cache)
};

}  // namespace llmd::engine
