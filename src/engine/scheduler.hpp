#pragma once
// Continuous batching (vLLM's v1 policy): each step takes the running sequences first (one decode
// token each, or their next prefill chunk), then admits waiting ones FCFS, all within a token
// budget and a sequence limit. When KV blocks run out, the most recently admitted running sequence
// is preempted: its blocks are freed and it goes back to the front of the queue, to be recomputed
// (its full blocks usually come straight back from the prefix cache).
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "engine/block_manager.hpp"
#include "engine/sequence.hpp"

namespace llmd::engine {

struct SchedulerConfig {
  static constexpr int32_t kDefaultMaxNumSeqs = 64;
  static constexpr int32_t kDefaultMaxBatchedTokens = 2048;
  int32_t max_num_seqs = kDefaultMaxNumSeqs;
  int32_t max_num_batched_tokens = kDefaultMaxBatchedTokens;
};

struct Scheduled {
  Sequence* seq = nullptr;
  int32_t n_tokens = 0;  // new tokens this step, from seq->n_computed
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& cfg, BlockManager& blocks);

  void add(std::unique_ptr<Sequence> seq);  // joins the waiting queue
  // Removes a sequence wherever it is and frees its blocks; nullptr when unknown.
  std::unique_ptr<Sequence> remove(uint64_t id);

  // Picks this step's work. Pointers stay valid until the next schedule()/remove().
  const std::vector<Scheduled>& schedule();
  // After the step: counts the computed tokens and registers newly full blocks with the prefix cache.
  void computed(const Scheduled& s);

  size_t n_running() const { return running_.size(); }
  size_t n_waiting() const { return waiting_.size(); }
  bool idle() const { return running_.empty() && waiting_.empty(); }
  uint64_t n_preemptions() const { return n_preemptions_; }

 private:
  bool ensure_blocks(Sequence& s, int32_t n_positions);
  void admit_prefix(Sequence& s);
  void preempt(Sequence& s);
  void release(Sequence& s);
  void ensure_hashes(Sequence& s, int32_t n_full_blocks);

  SchedulerConfig cfg_;
  BlockManager& blocks_;
  std::vector<std::unique_ptr<Sequence>> running_;  // admission order
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<Scheduled> out_;
  uint64_t n_preemptions_ = 0;
};

}  // namespace llmd::engine
