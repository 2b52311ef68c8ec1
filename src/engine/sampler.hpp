#pragma once
// Token sampling for one sequence: penalties, greedy or temperature + top-k + top-p + min-p, then a
// draw from a seeded PRNG. Semantics follow llama.cpp's samplers (and vLLM's for which tokens the
// penalties count); the default SamplingParams are the OpenAI/vLLM request defaults.
//
// Data path: after construction nothing allocates. Every buffer is sized once for the vocabulary,
// and the full-vocabulary sort is avoided unless top-p really needs the tail (see sampler.cpp).
// Threading: a Sampler belongs to one sequence and is used by one thread at a time.
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace llmd::engine {

struct SamplingParams {
  float temperature = 1.0f;         // 0 => greedy (anything below kGreedyTemperature is treated as 0)
  int32_t top_k = 0;                // 0 or -1 => disabled
  float top_p = 1.0f;               // 1 => disabled
  float min_p = 0.0f;               // 0 => disabled
  float repetition_penalty = 1.0f;  // over prompt + generated tokens
  float frequency_penalty = 0.0f;   // over generated tokens only
  float presence_penalty = 0.0f;    // over generated tokens only
  std::optional<uint64_t> seed;     // same seed => same output; none => a fresh one per request

  // vLLM's _SAMPLING_EPS: smaller temperatures would overflow logits / T, so they mean greedy.
  static constexpr float kGreedyTemperature = 1e-5f;

  bool greedy() const { return temperature < kGreedyTemperature; }
  bool has_penalties() const {
    return repetition_penalty != 1.0f || frequency_penalty != 0.0f || presence_penalty != 0.0f;
  }
  // An error message naming the first bad field, or nullopt when every value is usable.
  std::optional<std::string> validate() const;
};

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0.0f;
};

class Sampler {
 public:
  // Throws llmd::Error for n_vocab <= 0 or parameters that fail validate() (control path).
  Sampler(const SamplingParams& p, int64_t n_vocab);

  // Picks the next token from `logits` (n_vocab floats; penalties are applied in place).
  // Order: penalties -> greedy argmax (lowest id on ties) | temperature -> top-k -> top-p -> min-p
  // -> softmax -> draw. Does not record the token: call accept() with the token actually kept.
  int32_t sample(float* logits);

  // Records the prompt for the repetition penalty (replaces a previous prompt; keeps accepted tokens).
  void set_prompt(std::span<const int32_t> ids);
  // Records a generated token (repetition, frequency and presence penalties).
  void accept(int32_t token);
  // Forgets prompt and generated tokens; the RNG stream continues.
  void reset_history();

  // Log-probabilities of the distribution the last sample() drew from, i.e. after penalties,
  // temperature and filters (a filtered-out token gets -inf). For greedy that is the log-softmax
  // of the penalized logits, read from the buffer passed to sample(): it must still be alive.
  float logprob(int32_t token);
  // Fills `out` with the min(out.size(), n candidates) most likely tokens, highest first (lower id
  // on ties); returns how many were written. Reorders internal scratch only.
  size_t top_logprobs(std::span<TokenLogprob> out);

  const SamplingParams& params() const { return params_; }
  int64_t n_vocab() const { return n_vocab_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
    float p;
  };
  void apply_penalties(float* logits) const;
  int32_t sample_greedy(const float* logits);
  int32_t sample_random(float* logits);
  // Draws an index of [0, n_cand_) from the logits in weight_ (max_logit their finite maximum).
  size_t draw(float max_logit);
  void ensure_scratch();
  void build_full_candidates(float temperature);  // cand_ = the whole vocabulary, in id order
  template <class Scaled>
  void top_k_heap(int32_t k, Scaled scaled);
  void top_p(float p);
  void min_p(float p);
  void prepare_greedy_logprobs();

  SamplingParams params_;
  int64_t n_vocab_;
  std::mt19937_64 rng_;

  // Penalty state, allocated only when a penalty is active. `seen_` lists each id that has a
  // non-zero entry in either table so penalties cost O(distinct tokens), not O(vocab).
  std::vector<uint8_t> in_prompt_;
  std::vector<int32_t> out_count_;
  std::vector<int32_t> seen_;

  // Candidates of the last draw: [0, n_cand_) survived the filters; p is top-p's exp(logit - max).
  std::vector<Candidate> cand_;
  size_t n_cand_ = 0;
  std::vector<float> weight_;      // the draw's exp(logit - max) of cand_[i]
  std::vector<double> block_sum_;  // the draw's weight sums per kDrawBlock candidates
  bool sorted_ = false;            // cand_[0, n_cand_) in descending (logit, -id) order
  bool cand_ready_ = false;        // false after an unfiltered draw: cand_ is built only if asked for
  float log_norm_ = 0.0f;          // logprob = logit - log_norm_
  // Greedy keeps no candidates; logprobs are derived lazily from the caller's logits.
  const float* last_logits_ = nullptr;
  bool greedy_last_ = false;
  bool greedy_prepared_ = false;
};

}  // namespace llmd::engine
