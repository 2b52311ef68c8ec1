#include "engine/scheduler.hpp"

#include <algorithm>

namespace llmd::engine {

Scheduler::Scheduler(const SchedulerConfig& cfg, BlockManager& blocks) : cfg_(cfg), blocks_(blocks) {
  running_.reserve(cfg.max_num_seqs);
  out_.reserve(cfg.max_num_seqs);
}

void Scheduler::add(std::unique_ptr<Sequence> seq) {
  waiting_.push_back(std::move(seq));
}

std::unique_ptr<Sequence> Scheduler::remove(uint64_t id) {
  auto take = [&](auto& list) -> std::unique_ptr<Sequence> {
    auto it = std::find_if(list.begin(), list.end(), [&](const auto& s) { return s->id == id; });
    if (it == list.end()) return nullptr;
    std::unique_ptr<Sequence> s = std::move(*it);
    list.erase(it);
    release(*s);
    return s;
  };
  if (auto s = take(running_)) return s;
  return take(waiting_);
}

void Scheduler::release(Sequence& s) {
  blocks_.release(s.blocks);
  s.blocks.clear();
  s.n_computed = 0;
  s.n_committed = 0;
}

void Scheduler::preempt(Sequence& s) {
  release(s);
  ++s.n_preemptions;
  ++n_preemptions_;
}

bool Scheduler::ensure_blocks(Sequence& s, int32_t n_positions) {
  const int32_t need = (n_positions + blocks_.block_size() - 1) / blocks_.block_size();
  while (static_cast<int32_t>(s.blocks.size()) < need) {
    auto b = blocks_.allocate();
    if (!b) return false;
    s.blocks.push_back(*b);
  }
  return true;
}

void Scheduler::ensure_hashes(Sequence& s, int32_t n_full_blocks) {
  const int32_t bs = blocks_.block_size();
  while (static_cast<int32_t>(s.hashes.size()) < n_full_blocks) {
    const size_t i = s.hashes.size();
    const BlockHash& parent = i == 0 ? s.root : s.hashes[i - 1];
    s.hashes.push_back(block_hash(parent, std::span(s.tokens).subspan(i * bs, bs)));
  }
}

// Takes the longest cached run of the sequence's leading full blocks. At least the last token is
// always computed, because its logits are needed: a fully cached prompt gives back its last block.
void Scheduler::admit_prefix(Sequence& s) {
  const int32_t bs = blocks_.block_size();
  const int32_t usable = (s.n_tokens() - 1) / bs;
  ensure_hashes(s, usable);
  const int32_t hit =
      blocks_.acquire_cached_prefix(std::span(s.hashes).first(usable), s.blocks, s.n_tokens());
  s.n_computed = hit * bs;
  s.n_committed = hit;
  s.n_cached = std::min(s.n_computed, s.n_prompt);
}

const std::vector<Scheduled>& Scheduler::schedule() {
  out_.clear();
  int32_t budget = cfg_.max_num_batched_tokens;

  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence& s = *running_[i];
    const int32_t n = std::min(s.n_uncomputed(), budget);
    if (ensure_blocks(s, s.n_computed + n)) {
      out_.push_back({&s, n});
      budget -= n;
      ++i;
      continue;
    }
    // Out of blocks: free the most recently admitted sequence (possibly this one) and retry.
    std::unique_ptr<Sequence> victim = std::move(running_.back());
    running_.pop_back();
    for (auto it = out_.begin(); it != out_.end(); ++it) {
      if (it->seq == victim.get()) {  // already scheduled this step: give its tokens back
        budget += it->n_tokens;
        out_.erase(it);
        break;
      }
    }
    preempt(*victim);
    waiting_.push_front(std::move(victim));
  }

  while (budget > 0 && !waiting_.empty() && static_cast<int32_t>(running_.size()) < cfg_.max_num_seqs) {
    Sequence& s = *waiting_.front();
    if (s.blocks.empty()) admit_prefix(s);
    const int32_t n = std::min(s.n_uncomputed(), budget);
    if (!ensure_blocks(s, s.n_computed + n)) {
      release(s);  // hoard nothing while waiting; its cached blocks stay findable
      break;       // FCFS: nobody overtakes the head of the queue
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    out_.push_back({&s, n});
    budget -= n;
  }
  return out_;
}

void Scheduler::computed(const Scheduled& x) {
  Sequence& s = *x.seq;
  s.n_computed += x.n_tokens;
  const int32_t bs = blocks_.block_size();
  const int32_t full = s.n_computed / bs;
  ensure_hashes(s, full);
  for (; s.n_committed < full; ++s.n_committed) {
    const int32_t i = s.n_committed;
    blocks_.commit_full_block(s.blocks[i], s.hashes[i], i == 0 ? nullptr : &s.hashes[i - 1],
                              std::span(s.tokens).subspan(static_cast<size_t>(i) * bs, bs));
  }
}

}  // namespace llmd::engine
