#pragma once
// The blocks a prefill server keeps for a decode server to pull (P/D disaggregation), by transfer
// id, each with a deadline: released when the decode side says it has them, or when the deadline
// passes (the decode side died or never came). Only bookkeeping: the references themselves are
// taken and dropped on the BlockManager by the engine.
//
// Threading: engine thread only, like the BlockManager.
#include <chrono>
#include <cstdint>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace llmd::engine {

class PinnedBlocks {
 public:
  using Clock = std::chrono::steady_clock;

  // False (and nothing changes) if `id` is pinned already.
  bool pin(std::string id, std::vector<int32_t> blocks, Clock::time_point deadline);
  // The blocks of `id`, no longer pinned; nullopt if it is not (released already, or expired).
  std::optional<std::vector<int32_t>> take(const std::string& id);
  // Takes every pin whose deadline is at or before `now`, in deadline order, into `out`.
  void take_expired(Clock::time_point now, std::vector<std::pair<std::string, std::vector<int32_t>>>& out);
  // The earliest deadline of a live pin: the engine sleeps no longer than that.
  std::optional<Clock::time_point> next_deadline();

  std::size_t size() const { return pins_.size(); }
  int64_t n_blocks() const { return n_blocks_; }

 private:
  struct Pin {
    std::vector<int32_t> blocks;
    Clock::time_point deadline;
  };
  // Deadlines in a min-heap; an entry whose pin was taken (or taken and pinned again with another
  // deadline) is skipped when it reaches the top: removal stays O(1) in take().
  using Due = std::pair<Clock::time_point, std::string>;
  void drop_stale_tops();

  std::unordered_map<std::string, Pin> pins_;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> due_;
  int64_t n_blocks_ = 0;
};

}  // namespace llmd::engine
