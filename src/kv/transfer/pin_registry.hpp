#pragma once
// Which blocks a peer may read: request id -> the blocks pinned for it (with their keys), as the
// engine registers them after a prefill. A READ leases the blocks it names for as long as their bytes
// are being sent; a block that is not pinned under that id is never read.
//
// Threading: every method may be called from any thread (the engine thread pins and unpins, the
// transfer server's thread leases).
#include <cstdint>
#include <expected>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/block_hash.hpp"
#include "kv/transfer/xfer_error.hpp"

namespace llmd::kv::transfer {

class PinRegistry {
 public:
  // Ends a lease when destroyed (moved-from: nothing).
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& o) noexcept : reg_(std::exchange(o.reg_, nullptr)), id_(std::move(o.id_)) {}
    Lease& operator=(Lease&& o) noexcept {
      if (this != &o) {
        end();
        reg_ = std::exchange(o.reg_, nullptr);
        id_ = std::move(o.id_);
      }
      return *this;
    }
    ~Lease() { end(); }
    void end();

   private:
    friend class PinRegistry;
    Lease(PinRegistry* reg, std::string id) : reg_(reg), id_(std::move(id)) {}
    PinRegistry* reg_ = nullptr;
    std::string id_;
  };

  // Registers (or replaces) the blocks pinned under `id`; keys[i] is the key of blocks[i].
  void pin(std::string id, std::vector<int32_t> blocks, std::vector<BlockHash> keys);

  // Forgets `id`; false while a lease on it is held (the engine retries: the bytes are being sent).
  // An unknown id is forgotten already: true.
  bool unpin(std::string_view id);

  // Leases `blocks` of `id` and writes their keys to keys_out (resized to blocks.size()):
  // kUnknownRequest when nothing is pinned under id, kBadBlock when a block is not one of its blocks.
  std::expected<Lease, XferError> lease(std::string_view id, std::span<const uint32_t> blocks,
                                        std::vector<BlockHash>& keys_out);

  bool pinned(std::string_view id) const;
  size_t size() const;

 private:
  struct Entry {
    std::unordered_map<int32_t, BlockHash> keys;  // block id -> key
    int leases = 0;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };

  void unlease(const std::string& id);

  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry, StringHash, std::equal_to<>> entries_;
};

}  // namespace llmd::kv::transfer
