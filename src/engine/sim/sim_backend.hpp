#pragma once
// The simulation backend (`llmd serve --sim`): the Backend interface without a model. A forward
// step validates the batch as a real backend does, takes as long as a latency model says, and
// returns logits whose argmax is a token already in the sequence, so the scheduler, block manager,
// prefix cache, metrics and KV events run unchanged while a 2-core machine hosts dozens of servers
// (router and autoscaler tests at scale).
//
// Its "KV cache" holds the token id of every cached position (n_blocks x block_size int32), which
// is all the output depends on: a sequence whose prefix came from the prefix cache produces the same
// tokens as a cold run, exactly as with a real model.
#include <cstdint>
#include <memory>

#include "engine/backend.hpp"

namespace llmd::engine::sim {

// Step time = base_step_ms
//           + prefill_ms_per_token x (tokens of prefill sequences in the step)
//           + decode_ms_per_step x (1 + decode_batch_growth x (decode sequences - 1))   if any decode
// A decode sequence is one with a single new token after a non-empty cache (pos > 0); everything
// else is prefill (a chunk of a prompt). The defaults are a small model (~1B) on one GPU: prefill is
// compute-bound and linear in tokens, a decode step is memory-bound, nearly flat in batch size.
struct SimLatencyModel {
  static constexpr double kDefaultBaseStepMs = 0.0;
  static constexpr double kDefaultPrefillMsPerToken = 0.05;  // 20k prompt tokens/s
  static constexpr double kDefaultDecodeMsPerStep = 8.0;     // 125 tokens/s for one sequence
  static constexpr double kDefaultDecodeBatchGrowth = 0.02;  // +2% per extra sequence in the step

  double base_step_ms = kDefaultBaseStepMs;  // fixed cost of any step (launch, scheduling)
  double prefill_ms_per_token = kDefaultPrefillMsPerToken;
  double decode_ms_per_step = kDefaultDecodeMsPerStep;
  double decode_batch_growth = kDefaultDecodeBatchGrowth;

  // Milliseconds for a step with these contents; 0 for an empty step.
  double step_ms(int64_t prefill_tokens, int64_t decode_seqs) const;
};

// How the step time is waited out. Sleeping alone wakes late by the timer slack plus scheduling
// delay (50 us to over 1 ms on a loaded machine); spinning the last stretch buys accuracy with CPU,
// which 32 servers on 2 cores do not have much of. Both are tunable.
struct SimTiming {
  static constexpr int32_t kDefaultSpinUs = 100;

  int32_t spin_us = kDefaultSpinUs;  // busy-wait (yielding) this long before the deadline; 0: sleep only
  // Lower the calling (engine) thread's timer slack to 1 ns (PR_SET_TIMERSLACK) on the first step,
  // so the sleep itself ends close to its deadline without spinning. The engine thread belongs to
  // the backend's caller, so this is an opt-out.
  bool tighten_timer_slack = true;
  bool sleep = true;  // false: no waiting at all (unit tests of the scheduler that want speed)
};

// What the generated tokens look like.
struct SimOutput {
  static constexpr int32_t kNoToken = -1;
  static constexpr float kDefaultTopLogit = 50.0f;  // softmax puts ~all mass on it even at T=2, V=32k

  // Excluded from the candidates (a sequence that starts with BOS does not generate BOS).
  int32_t bos_token_id = 1;
  int32_t eos_token_id = 2;
  // 0: never emit EOS (generation ends by max_tokens or a stop string). N > 0: the token predicted
  // at a total sequence length (prompt + generated) of N or more is EOS, so requests can finish by
  // `stop` deterministically; requests with ignore_eos are the sampler's business, not ours.
  int64_t eos_at_length = 0;
  uint64_t seed = 0;                   // varies which earlier position is copied
  float top_logit = kDefaultTopLogit;  // the argmax's logit; every other entry is 0
};

struct SimConfig {
  static constexpr int64_t kDefaultVocab = 32000;   // Llama 2's vocabulary size
  static constexpr int64_t kDefaultContext = 4096;  // the synthetic model's training context

  int64_t n_vocab = kDefaultVocab;
  int64_t n_ctx_train = kDefaultContext;
  // max_batch_tokens, max_seqs, max_seq_len (0: n_ctx_train), kv.block_size, kv.n_blocks (0:
  // max_seq_len x max_seqs tokens' worth, as the CPU backend). `threads` and kv.dtype are unused.
  BackendConfig backend;
  SimLatencyModel latency;
  SimTiming timing;
  SimOutput output;
};

// Throws llmd::Error for an inconsistent config (vocab too small for the special tokens, sizes <= 0).
std::unique_ptr<Backend> make_sim_backend(const SimConfig& config);

}  // namespace llmd::engine::sim
