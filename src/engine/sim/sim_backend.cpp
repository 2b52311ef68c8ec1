#include "engine/sim/sim_backend.hpp"
#include "common/shared_arena.hpp"

#include <fmt/format.h>
#include <sys/prctl.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "common/error.hpp"

namespace llmd::engine::sim {

double SimLatencyModel::step_ms(int64_t prefill_tokens, int64_t decode_seqs) const {
  if (prefill_tokens == 0 && decode_seqs == 0) return 0.0;
  double ms = base_step_ms + prefill_ms_per_token * static_cast<double>(prefill_tokens);
  if (decode_seqs > 0)
    ms += decode_ms_per_step * (1.0 + decode_batch_growth * static_cast<double>(decode_seqs - 1));
  return ms;
}

namespace {

using Clock = std::chrono::steady_clock;

// A Llama-3.2-1B-like shape: only describe() and callers that size things from the config read it.
model::LlamaConfig synthetic_config(const SimConfig& c) {
  model::LlamaConfig m;
  m.architecture = "sim";
  m.n_vocab = c.n_vocab;
  m.n_ctx_train = c.n_ctx_train;
  m.n_embd = 2048;
  m.n_layer = 16;
  m.n_ff = 8192;
  m.n_head = 32;
  m.n_head_kv = 8;
  m.head_dim = 64;
  m.n_rot = 64;
  return m;
}

// splitmix64's finaliser: cheap, and every input bit moves every output bit.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class SimBackend final : public Backend {
 public:
  explicit SimBackend(const SimConfig& c);

  const model::LlamaConfig& config() const override { return model_; }
  int32_t block_size() const override { return bs_; }
  int32_t n_blocks() const override { return n_blocks_; }
  int32_t max_seq_len() const override { return max_seq_len_; }
  int32_t max_batch_tokens() const override { return max_tokens_; }
  std::string describe() const override;
  std::expected<void, std::string> forward(const Batch& batch, float* logits) override;
  // One segment: a block's token ids. What a decode server pulls is what it predicts from.
  std::optional<KvRegion> kv_region() override {
    KvLayout l;
    l.n_segments = 1;
    l.segment_bytes = static_cast<uint64_t>(bs_) * sizeof(int32_t);
    l.segment_stride = l.segment_bytes * static_cast<uint64_t>(n_blocks_);
    l.n_blocks = n_blocks_;
    l.block_size = bs_;
    l.dtype = 2;  // kv::transfer::KvDtype::kSimTokens
    return KvRegion{l, kv_arena_.data()};
  }
  const SharedArena* kv_shared_arena() const override { return &kv_arena_; }

 private:
  std::expected<void, std::string> validate(const Batch& batch) const;
  int32_t predict(const BatchSeq& s) const;
  void wait_until(Clock::time_point deadline) const;

  SimConfig cfg_;
  model::LlamaConfig model_;
  int32_t bs_, max_seq_len_, max_tokens_, max_seqs_, n_blocks_;
  SharedArena kv_arena_;          // shared memory (see Backend::kv_shared_arena) holding:
  int32_t* kv_tokens_ = nullptr;  // [n_blocks x block_size]: the token id at each cached slot
};

SimBackend::SimBackend(const SimConfig& c)
    : cfg_(c),
      model_(synthetic_config(c)),
      bs_(c.backend.kv.block_size),
      max_seq_len_(c.backend.max_seq_len > 0 ? c.backend.max_seq_len : static_cast<int32_t>(c.n_ctx_train)),
      max_tokens_(c.backend.max_batch_tokens),
      max_seqs_(c.backend.max_seqs),
      n_blocks_(0) {
  const SimOutput& o = c.output;
  // 3: room for BOS, EOS and one ordinary token to fall back on.
  if (c.n_vocab < 3 || c.n_vocab > INT32_MAX)
    fail("sim vocabulary size must be in 3..{}, got {}", INT32_MAX, c.n_vocab);
  if (c.n_ctx_train <= 0 || c.n_ctx_train > INT32_MAX)
    fail("sim context length must be positive, got {}", c.n_ctx_train);
  if (bs_ <= 0) fail("KV block size must be positive, got {}", bs_);
  if (max_tokens_ <= 0 || max_seqs_ <= 0) fail("max batch tokens and max sequences must be positive");
  if (o.bos_token_id >= c.n_vocab || o.eos_token_id >= c.n_vocab)
    fail("sim BOS/EOS ids {}/{} are outside the vocabulary of {}", o.bos_token_id, o.eos_token_id, c.n_vocab);
  if (o.eos_at_length > 0 && o.eos_token_id < 0)
    fail("sim EOS after {} tokens needs an EOS token id", o.eos_at_length);
  const SimLatencyModel& l = c.latency;
  if (l.base_step_ms < 0 || l.prefill_ms_per_token < 0 || l.decode_ms_per_step < 0 ||
      l.decode_batch_growth < 0)
    fail("sim latency parameters must not be negative");
  const int64_t blocks = c.backend.kv.n_blocks > 0
                             ? c.backend.kv.n_blocks
                             : int64_t{max_seqs_} * ((int64_t{max_seq_len_} + bs_ - 1) / bs_);
  if (blocks * bs_ > INT32_MAX) fail("sim KV cache of {} blocks x {} tokens is too large", blocks, bs_);
  n_blocks_ = static_cast<int32_t>(blocks);
  kv_arena_ = SharedArena::create(static_cast<uint64_t>(blocks) * bs_ * sizeof(int32_t));
  kv_tokens_ = reinterpret_cast<int32_t*>(kv_arena_.data());
}

std::string SimBackend::describe() const {
  const SimLatencyModel& l = cfg_.latency;
  return fmt::format(
      "sim (vocab {}), KV {} blocks x {} tokens, max {} tokens/step; latency: {} ms/step + prefill {} "
      "ms/token + "
      "decode {} ms/step (+{}%/sequence)",
      model_.n_vocab, n_blocks_, bs_, max_tokens_, l.base_step_ms, l.prefill_ms_per_token,
      l.decode_ms_per_step, l.decode_batch_growth * 100);
}

std::expected<void, std::string> SimBackend::validate(const Batch& batch) const {
  return validate_batch(batch, {max_seqs_, max_tokens_, max_seq_len_, bs_, n_blocks_, model_.n_vocab});
}

// The next token copies an earlier token of the same sequence, picked by a hash of the length and
// the last token: deterministic in the sequence's tokens, and always "from the prompt's
// vocabulary" (generated tokens are themselves copies). BOS and EOS are skipped over.
int32_t SimBackend::predict(const BatchSeq& s) const {
  const SimOutput& o = cfg_.output;
  const int64_t len = s.pos + static_cast<int64_t>(s.tokens.size());  // tokens in the sequence now
  if (o.eos_at_length > 0 && len >= o.eos_at_length) return o.eos_token_id;
  const auto token_at = [&](int64_t p) {
    return kv_tokens_[int64_t{s.block_table[p / bs_]} * bs_ + p % bs_];
  };
  const uint64_t h =
      mix(o.seed ^ mix(static_cast<uint64_t>(len) ^ (uint64_t(uint32_t(s.tokens.back())) << 32)));
  // A prompt of only special tokens has nothing to copy; give up after a few probes rather than
  // scan a long context, and fall back to a fixed ordinary token.
  constexpr int kProbes = 8;
  int64_t p = static_cast<int64_t>(h % static_cast<uint64_t>(len));
  for (int i = 0; i < kProbes && i < len; ++i, p = (p + 1) % len) {
    const int32_t t = token_at(p);
    if (t != o.bos_token_id && t != o.eos_token_id) return t;
  }
  for (int32_t t = 0;; ++t)
    if (t != o.bos_token_id && t != o.eos_token_id) return t;  // t < 3 <= n_vocab
}

void SimBackend::wait_until(Clock::time_point deadline) const {
  const SimTiming& t = cfg_.timing;
  if (!t.sleep) return;
  if (t.tighten_timer_slack) {
    // Per thread: whichever thread runs steps (normally the one engine thread) gets it once.
    static thread_local bool tightened = false;
    if (!tightened) {
      prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
      tightened = true;
    }
  }
  const auto spin = std::chrono::microseconds(std::max(t.spin_us, 0));
  if (Clock::now() < deadline - spin) std::this_thread::sleep_until(deadline - spin);
  // Yield rather than burn: on an oversubscribed machine the other servers' engine threads run.
  while (Clock::now() < deadline) std::this_thread::yield();
}

std::expected<void, std::string> SimBackend::forward(const Batch& batch, float* logits) {
  // The step's time starts now, so validation and the logits fill are inside the modelled time.
  const Clock::time_point start = Clock::now();
  if (auto ok = validate(batch); !ok) return ok;

  int64_t prefill_tokens = 0, decode_seqs = 0;
  for (const BatchSeq& s : batch.seqs) {
    const int64_t len = static_cast<int64_t>(s.tokens.size());
    if (len == 1 && s.pos > 0)
      ++decode_seqs;
    else
      prefill_tokens += len;
    // "Compute the KV": remember the token at each new position.
    for (int64_t i = 0; i < len; ++i) {
      const int64_t p = s.pos + i;
      kv_tokens_[int64_t{s.block_table[p / bs_]} * bs_ + p % bs_] = s.tokens[i];
    }
  }

  const int64_t V = model_.n_vocab;
  float* row = logits;
  for (const BatchSeq& s : batch.seqs) {
    if (!s.want_logits) continue;
    std::fill_n(row, V, 0.0f);  // all-zero bytes: compiles to memset
    row[predict(s)] = cfg_.output.top_logit;
    row += V;
  }

  const double ms = cfg_.latency.step_ms(prefill_tokens, decode_seqs);
  wait_until(start +
             std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(ms)));
  return {};
}

}  // namespace

std::unique_ptr<Backend> make_sim_backend(const SimConfig& config) {
  return std::make_unique<SimBackend>(config);
}

}  // namespace llmd::engine::sim
