#include "kv/transfer/pin_registry.hpp"

#include "common/error.hpp"

namespace llmd::kv::transfer {

void PinRegistry::Lease::end() {
  if (reg_) std::exchange(reg_, nullptr)->unlease(id_);
}

void PinRegistry::pin(std::string id, std::vector<int32_t> blocks, std::vector<BlockHash> keys) {
  if (blocks.size() != keys.size()) fail("pin: {} blocks but {} keys", blocks.size(), keys.size());
  Entry e;
  e.keys.reserve(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) e.keys.emplace(blocks[i], keys[i]);
  std::lock_guard lock(mu_);
  auto& slot = entries_[std::move(id)];
  e.leases = slot.leases;  // a lease still held keeps counting against the new entry
  slot = std::move(e);
}

bool PinRegistry::unpin(std::string_view id) {
  std::lock_guard lock(mu_);
  const auto it = entries_.find(id);
  if (it == entries_.end()) return true;
  if (it->second.leases > 0) return false;
  entries_.erase(it);
  return true;
}

std::expected<PinRegistry::Lease, XferError> PinRegistry::lease(std::string_view id,
                                                                std::span<const uint32_t> blocks,
                                                                std::vector<BlockHash>& keys_out) {
  keys_out.resize(blocks.size());
  std::lock_guard lock(mu_);
  const auto it = entries_.find(id);
  if (it == entries_.end()) return std::unexpected(XferError::kUnknownRequest);
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i] > static_cast<uint32_t>(INT32_MAX)) return std::unexpected(XferError::kBadBlock);
    const auto k = it->second.keys.find(static_cast<int32_t>(blocks[i]));
    if (k == it->second.keys.end()) return std::unexpected(XferError::kBadBlock);
    keys_out[i] = k->second;
  }
  ++it->second.leases;
  return Lease(this, it->first);
}

void PinRegistry::unlease(const std::string& id) {
  std::lock_guard lock(mu_);
  const auto it = entries_.find(id);
  if (it != entries_.end() && it->second.leases > 0) --it->second.leases;
}

bool PinRegistry::pinned(std::string_view id) const {
  std::lock_guard lock(mu_);
  return entries_.contains(id);
}

size_t PinRegistry::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace llmd::kv::transfer
