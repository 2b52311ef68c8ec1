#include "engine/pinned_blocks.hpp"

namespace llmd::engine {

bool PinnedBlocks::pin(std::string id, std::vector<int32_t> blocks, Clock::time_point deadline) {
  if (pins_.contains(id)) return false;
  n_blocks_ += static_cast<int64_t>(blocks.size());
  due_.emplace(deadline, id);
  pins_.emplace(std::move(id), Pin{std::move(blocks), deadline});
  return true;
}

std::optional<std::vector<int32_t>> PinnedBlocks::take(const std::string& id) {
  const auto it = pins_.find(id);
  if (it == pins_.end()) return std::nullopt;
  std::vector<int32_t> blocks = std::move(it->second.blocks);
  pins_.erase(it);
  n_blocks_ -= static_cast<int64_t>(blocks.size());
  return blocks;
}

void PinnedBlocks::drop_stale_tops() {
  while (!due_.empty()) {
    const auto it = pins_.find(due_.top().second);
    if (it != pins_.end() && it->second.deadline == due_.top().first) return;
    due_.pop();
  }
}

void PinnedBlocks::take_expired(Clock::time_point now,
                                std::vector<std::pair<std::string, std::vector<int32_t>>>& out) {
  for (drop_stale_tops(); !due_.empty() && due_.top().first <= now; drop_stale_tops()) {
    std::string id = due_.top().second;
    due_.pop();
    auto blocks = take(id);
    out.emplace_back(std::move(id), std::move(*blocks));
  }
}

std::optional<PinnedBlocks::Clock::time_point> PinnedBlocks::next_deadline() {
  drop_stale_tops();
  if (due_.empty()) return std::nullopt;
  return due_.top().first;
}

}  // namespace llmd::engine
