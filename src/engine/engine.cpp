#include "engine/engine.hpp"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

namespace llmd::engine {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
    case FinishReason::kNone:
      break;
  }
  return nullptr;
}

Engine::Engine(Backend& backend, const EngineConfig& cfg, KvEventSink* events)
    : backend_(backend),
      cfg_(cfg),
      events_(events),
      blocks_(BlockManagerConfig{backend.n_blocks(), backend.block_size(), cfg.prefix_caching}, events),
      sched_(cfg.scheduler, blocks_),
      logits_(static_cast<size_t>(cfg.scheduler.max_num_seqs) * backend.config().n_vocab) {
  batch_.seqs.reserve(cfg.scheduler.max_num_seqs);
  top_.resize(32);
  done_.reserve(cfg.scheduler.max_num_seqs);
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

std::expected<uint64_t, std::string> Engine::submit(RequestSpec spec) {
  const auto& c = backend_.config();
  const int64_t n_prompt = static_cast<int64_t>(spec.prompt.size());
  if (n_prompt == 0) return std::unexpected("the prompt is empty");
  for (int32_t t : spec.prompt)
    if (t < 0 || t >= c.n_vocab)
      return std::unexpected(fmt::format("token id {} is out of range [0, {})", t, c.n_vocab));
  if (spec.max_tokens < 1) return std::unexpected("max_tokens must be at least 1");
  if (auto err = spec.sampling.validate()) return std::unexpected(*err);
  const int64_t limit = backend_.max_seq_len();
  if (n_prompt + spec.max_tokens > limit)
    return std::unexpected(
        fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens ({} "
                    "in the prompt, "
                    "{} for the completion). Please reduce the length of the prompt or the completion.",
                    limit, n_prompt + spec.max_tokens, n_prompt, spec.max_tokens));
  const int64_t bs = backend_.block_size();
  if ((n_prompt + spec.max_tokens + bs - 1) / bs > backend_.n_blocks())
    return std::unexpected(
        fmt::format("the request needs more KV cache ({} tokens) than the server has ({} tokens)",
                    n_prompt + spec.max_tokens, static_cast<int64_t>(backend_.n_blocks()) * bs));
  if (spec.logprobs > static_cast<int32_t>(top_.size()))
    return std::unexpected(fmt::format("logprobs must be at most {}", top_.size()));

  auto s = std::make_unique<Sequence>();
  s->id = next_id_.fetch_add(1);
  s->n_prompt = static_cast<int32_t>(n_prompt);
  s->tokens = spec.prompt;
  s->tokens.reserve(n_prompt + spec.max_tokens);
  s->root = root_hash(cfg_.model_fingerprint, spec.cache_salt);
  s->sampler = std::make_unique<Sampler>(spec.sampling, c.n_vocab);
  s->sampler->set_prompt(spec.prompt);
  s->spec = std::move(spec);
  const uint64_t id = s->id;
  {
    std::lock_guard lock(mu_);
    inbox_.push_back(std::move(s));
  }
  wake_.notify_one();
  return id;
}

void Engine::abort(uint64_t id) {
  {
    std::lock_guard lock(mu_);
    aborts_.push_back(id);
  }
  wake_.notify_one();
}

void Engine::kv_release(std::string pin_id) {
  {
    std::lock_guard lock(mu_);
    kv_releases_.push_back(std::move(pin_id));
  }
  wake_.notify_one();
}

EngineStats Engine::stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

void Engine::loop() {
  std::vector<std::unique_ptr<Sequence>> arrived;
  std::vector<uint64_t> aborted;
  std::vector<std::string> released;
  std::vector<std::pair<uint64_t, bool>> pulls_done;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      const auto ready = [&] {
        return stop_ || !inbox_.empty() || !aborts_.empty() || !kv_releases_.empty() || !kv_pulled_.empty() ||
               !sched_.idle();
      };
      // Idle with pins: sleep only until the first of them expires.
      if (const auto due = pins_.next_deadline())
        wake_.wait_until(lock, *due, ready);
      else
        wake_.wait(lock, ready);
      if (stop_) break;
      arrived.swap(inbox_);
      aborted.swap(aborts_);
      released.swap(kv_releases_);
      pulls_done.swap(kv_pulled_);
    }
    unpin(released);
    released.clear();
    for (const auto& [id, ok] : pulls_done) pulled(id, ok);
    pulls_done.clear();
    for (uint64_t id : aborted) {
      if (pulling_.contains(id)) {
        aborted_pulls_.insert(id);  // ends when its pull does
      } else if (auto s = sched_.remove(id)) {
        RequestOutput out;
        finish(*s, FinishReason::kAbort, out);
      } else {  // not yet scheduled: it may be among the new arrivals
        auto it = std::find_if(arrived.begin(), arrived.end(), [&](const auto& s) { return s->id == id; });
        if (it != arrived.end()) {
          RequestOutput out;
          finish(**it, FinishReason::kAbort, out);
          arrived.erase(it);
        }
      }
    }
    aborted.clear();
    for (auto& s : arrived) {
      {
        std::lock_guard lock(stats_mu_);
        stats_.prompt_tokens += s->n_prompt;
      }
      if (s->spec.kv_remote && cfg_.kv_puller)
        start_pull(std::move(s));
      else
        sched_.add(std::move(s));
    }
    arrived.clear();
    if (!sched_.idle()) step();
    publish_stats();
  }
  // Shutting down: every request still known ends as aborted, so no client waits forever. A pull
  // in flight may still write its blocks: it is waited for (the puller's own timeouts bound it).
  for (auto& [id, s] : pulling_) aborted_pulls_.insert(id);
  while (!pulling_.empty()) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return !kv_pulled_.empty(); });
      pulls_done.swap(kv_pulled_);
    }
    for (const auto& [id, ok] : pulls_done) pulled(id, ok);
    pulls_done.clear();
  }
  for (auto& s : inbox_) {
    RequestOutput out;
    finish(*s, FinishReason::kAbort, out);
  }
  while (!sched_.idle()) {
    const auto& work = sched_.schedule();
    if (work.empty()) break;
    const uint64_t id = work.front().seq->id;
    if (auto s = sched_.remove(id)) {
      RequestOutput out;
      finish(*s, FinishReason::kAbort, out);
    }
  }
}

namespace {

// The keys of every block that holds the prompt: the full blocks' chained keys, and the last block
// (partial, or full) keyed over the prompt tokens it holds. Both legs compute the same keys for the
// same tokens, and a partial block's key (over fewer tokens) is never a full block's.
std::vector<BlockHash> prompt_block_keys(const Sequence& s, int32_t bs) {
  const int32_t n = (s.n_prompt + bs - 1) / bs;
  std::vector<BlockHash> keys;
  keys.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    if (static_cast<size_t>(i) < s.hashes.size()) {
      keys.push_back(s.hashes[i]);
      continue;
    }
    const int32_t len = std::min(bs, s.n_prompt - i * bs);
    keys.push_back(block_hash(i == 0 ? s.root : keys[i - 1],
                              std::span(s.tokens).subspan(static_cast<size_t>(i) * bs, len)));
  }
  return keys;
}

}  // namespace

void Engine::pin(Sequence& s, RequestOutput& out) {
  // Every block of the prompt, the last (partial) one too, all computed (the request finished): the
  // decode leg then computes only the last token, as vLLM's decode does.
  const int32_t bs = blocks_.block_size();
  const auto n = static_cast<size_t>((s.n_prompt + bs - 1) / bs);
  std::vector<int32_t> blocks(s.blocks.begin(), s.blocks.begin() + static_cast<std::ptrdiff_t>(n));
  if (!pins_.pin(s.spec.kv_pin_id, blocks, std::chrono::steady_clock::now() + cfg_.kv_pin_timeout)) return;
  blocks_.ref(blocks);  // the sequence's own references go when it is removed; these stay
  if (cfg_.kv_pins) cfg_.kv_pins->pinned(s.spec.kv_pin_id, blocks, prompt_block_keys(s, bs));
  out.kv_pinned_blocks = std::move(blocks);
}

void Engine::unpin(const std::vector<std::string>& released) {
  // A pin a peer is still reading is kept a little longer: its blocks must not be reused under it.
  constexpr auto kRetry = std::chrono::milliseconds(10);
  if (pins_.size() == 0) return;  // every step passes here: no clock read without pins
  const auto now = std::chrono::steady_clock::now();
  uint64_t n_released = 0, n_expired = 0;
  const auto free = [&](std::string id, std::vector<int32_t> blocks) {
    if (cfg_.kv_pins && !cfg_.kv_pins->unpinned(id)) {
      pins_.pin(std::move(id), std::move(blocks), now + kRetry);
      return false;
    }
    blocks_.release(blocks);
    return true;
  };
  for (const std::string& id : released)
    if (auto blocks = pins_.take(id)) n_released += free(id, std::move(*blocks));
  std::vector<std::pair<std::string, std::vector<int32_t>>> expired;
  pins_.take_expired(now, expired);
  for (auto& [id, blocks] : expired) n_expired += free(std::move(id), std::move(blocks));
  if (n_released == 0 && n_expired == 0) return;
  std::lock_guard lock(stats_mu_);
  stats_.kv_pins_released += n_released;
  stats_.kv_pins_expired += n_expired;
}

// The decode leg: the prompt's leading full blocks this engine already holds are prefix hits; the
// rest of the prompt's blocks the prefill server holds are pulled into newly allocated blocks. The
// last block (the one holding the last prompt token) is pulled into a block of the sequence's own,
// not a prefix-cache one: the last token is computed again here, for its logits. Whatever is not
// pulled is computed as usual.
void Engine::start_pull(std::unique_ptr<Sequence> s) {
  const RemoteBlocks& remote = *s->spec.kv_remote;
  const int32_t bs = blocks_.block_size();
  const int32_t tail = (s->n_prompt - 1) / bs;  // the block of the last prompt token
  const auto n = std::min<size_t>(static_cast<size_t>(tail) + 1, remote.block_ids.size());
  if (n == 0 || s->n_prompt == 0) {  // nothing worth pulling: an ordinary request
    cfg_.kv_puller->release(remote);
    sched_.add(std::move(s));
    return;
  }
  const std::vector<BlockHash> keys = prompt_block_keys(*s, bs);
  const size_t n_full = std::min<size_t>(n, static_cast<size_t>(tail));  // keyed prefix-cache blocks
  s->hashes.assign(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(n_full));
  const int32_t local = blocks_.acquire_cached_prefix(s->hashes, s->blocks, s->n_prompt);
  std::vector<KvBlockPair> pairs;
  for (size_t i = static_cast<size_t>(local); i < n; ++i) {
    if (i == static_cast<size_t>(tail) && s->blocks.size() != static_cast<size_t>(tail)) break;
    const auto b = blocks_.allocate();
    if (!b) break;  // the cache is full: pull fewer, compute the rest
    s->blocks.push_back(*b);
    pairs.push_back({remote.block_ids[i], *b, keys[i]});
  }
  s->n_computed = s->n_cached = local * bs;
  s->n_committed = local;
  if (pairs.empty()) {
    cfg_.kv_puller->release(remote);
    sched_.add(std::move(s));
    return;
  }
  const uint64_t id = s->id;
  const RemoteBlocks& from = *s->spec.kv_remote;  // owned by the sequence, which outlives the pull
  pulling_.emplace(id, std::move(s));
  cfg_.kv_puller->pull(from, std::move(pairs), [this, id](bool ok) {
    {
      std::lock_guard lock(mu_);
      kv_pulled_.emplace_back(id, ok);
    }
    wake_.notify_one();
  });
}

void Engine::pulled(uint64_t id, bool ok) {
  const auto it = pulling_.find(id);
  if (it == pulling_.end()) return;
  std::unique_ptr<Sequence> s = std::move(it->second);
  pulling_.erase(it);
  const bool aborted = aborted_pulls_.erase(id) > 0;
  if (aborted || !ok) {
    // Released before any key is given: bytes of a failed pull are never a prefix hit.
    blocks_.release(s->blocks);
    s->blocks.clear();
    s->n_computed = s->n_cached = s->n_committed = 0;
    if (!ok) {
      std::lock_guard lock(stats_mu_);
      ++stats_.kv_pull_failures;
    }
    if (aborted) {
      RequestOutput out;
      finish(*s, FinishReason::kAbort, out);
    } else {
      sched_.add(std::move(s));  // computed here instead (its prefix hits are found again)
    }
    return;
  }
  // Arrived: the full blocks are keyed as if computed here, so later requests reuse them (and KV
  // events announce them); the last prompt block stays the sequence's own until it is full.
  const int32_t bs = blocks_.block_size();
  const auto n = static_cast<int32_t>(s->blocks.size());
  const int32_t tail = (s->n_prompt - 1) / bs;
  const bool with_tail = n > tail;
  const int32_t full = with_tail ? tail : n;
  for (int32_t i = s->n_committed; i < full; ++i)
    blocks_.commit_full_block(s->blocks[i], s->hashes[i], i ? &s->hashes[i - 1] : nullptr,
                              std::span(s->tokens).subspan(static_cast<size_t>(i) * bs, bs));
  {
    std::lock_guard lock(stats_mu_);
    stats_.kv_pulled_blocks += static_cast<uint64_t>(n - s->n_committed);
  }
  s->n_committed = full;
  s->n_computed = s->n_cached = with_tail ? s->n_prompt - 1 : n * bs;
  sched_.add(std::move(s));
}

void Engine::finish(Sequence& s, FinishReason why, RequestOutput& out) {
  if (!s.spec.kv_pin_id.empty() && (why == FinishReason::kStop || why == FinishReason::kLength)) pin(s, out);
  out.finish = why;
  out.prompt_tokens = s.n_prompt;
  out.cached_tokens = s.n_cached;
  out.generated_tokens = s.n_generated();
  if (s.spec.sink) s.spec.sink(std::move(out));
}

void Engine::step() {
  const std::vector<Scheduled>& work = sched_.schedule();
  if (work.empty()) {  // nothing fits right now (cannot happen with validated requests): don't spin
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return;
  }
  batch_.clear();
  uint64_t prefill = 0;
  for (const Scheduled& x : work) {
    Sequence& s = *x.seq;
    const bool last = s.n_computed + x.n_tokens == s.n_tokens();
    batch_.seqs.push_back(
        {std::span(s.tokens).subspan(s.n_computed, x.n_tokens), s.n_computed, s.blocks, last});
    if (s.n_computed < s.n_prompt) prefill += std::min(x.n_tokens, s.n_prompt - s.n_computed);
  }
  const auto ok = backend_.forward(batch_, logits_.data());

  std::vector<uint64_t>& done = done_;  // removed after the loop, which holds pointers into them
  done.clear();
  uint64_t generated = 0;
  size_t row = 0;
  const int64_t n_vocab = backend_.config().n_vocab;
  for (size_t i = 0; i < work.size(); ++i) {
    Sequence& s = *work[i].seq;
    RequestOutput out;
    if (!ok) {
      out.error = ok.error();
      finish(s, FinishReason::kError, out);
      done.push_back(s.id);
      continue;
    }
    sched_.computed(work[i]);
    if (!batch_.seqs[i].want_logits) continue;
    float* logits = logits_.data() + row++ * n_vocab;
    const int32_t tok = s.sampler->sample(logits);
    if (s.spec.logprobs >= 0) {
      TokenLogprobs lp{tok, s.sampler->logprob(tok), {}};
      const size_t n = s.sampler->top_logprobs(std::span(top_).first(s.spec.logprobs));
      lp.top.assign(top_.begin(), top_.begin() + n);
      out.logprobs.push_back(std::move(lp));
    }
    s.sampler->accept(tok);
    s.tokens.push_back(tok);
    ++generated;
    const bool eos = !s.spec.ignore_eos && cfg_.is_eos && cfg_.is_eos(tok);
    const bool stop_id = std::find(s.spec.stop_token_ids.begin(), s.spec.stop_token_ids.end(), tok) !=
                         s.spec.stop_token_ids.end();
    FinishReason why = FinishReason::kNone;
    if (eos || stop_id) {
      why = FinishReason::kStop;  // the stop token itself is counted but not delivered as text
      if (!out.logprobs.empty()) out.logprobs.pop_back();
    } else {
      out.tokens.push_back(tok);
      if (s.n_generated() >= s.spec.max_tokens || s.n_tokens() >= backend_.max_seq_len())
        why = FinishReason::kLength;
    }
    if (why != FinishReason::kNone) {
      finish(s, why, out);
      done.push_back(s.id);
    } else {
      out.prompt_tokens = s.n_prompt;
      out.cached_tokens = s.n_cached;
      out.generated_tokens = s.n_generated();
      if (s.spec.sink) s.spec.sink(std::move(out));
    }
  }
  for (uint64_t id : done) sched_.remove(id);
  if (events_) events_->end_of_step();

  std::lock_guard lock(stats_mu_);
  stats_.generation_tokens += generated;
  stats_.computed_prompt_tokens += prefill;
  ++stats_.steps;
}

void Engine::publish_stats() {
  std::lock_guard lock(stats_mu_);
  stats_.running = static_cast<int64_t>(sched_.n_running());
  stats_.waiting = static_cast<int64_t>(sched_.n_waiting());
  stats_.kv_usage = blocks_.usage();
  stats_.prefix_queries = blocks_.prefix_queries();
  stats_.prefix_hits = blocks_.prefix_hits();
  stats_.preemptions = sched_.n_preemptions();
  stats_.kv_pinned_blocks = pins_.n_blocks();
}

}  // namespace llmd::engine
