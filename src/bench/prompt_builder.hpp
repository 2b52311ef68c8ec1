#pragma once
// Internal to the workloads: a portable seeded generator (the same stream for a seed on every
// platform, unlike std:: distributions) and the builder of synthetic prompts, as token ids of
// ordinary tokens when a tokenizer is known, else as text of random words (~4 characters a token,
// llm-d's estimate).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bench/workload.hpp"

namespace llmd::bench {

// splitmix64: tiny, fast, and good enough for choosing tokens.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
  // Uniform in [lo, hi].
  int64_t between(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
  }

 private:
  uint64_t s_;
};

// A seed for the stream named by (seed, a, b): streams are independent of the order they are used in.
uint64_t derive_seed(uint64_t seed, uint64_t a, uint64_t b = 0);

// A prompt being built: tokens with a tokenizer, text without.
struct Prompt {
  std::vector<int32_t> tokens;
  std::string text;
};

class PromptBuilder {
 public:
  explicit PromptBuilder(const model::Tokenizer* tok);

  bool has_tokenizer() const { return tok_ != nullptr; }
  // How many distinct first elements append() can be told to start with (tokens or words).
  size_t alphabet() const;
  // Appends `len` random tokens (exactly), or 4*len characters of words. `first` (taken modulo
  // alphabet()) forces the first token or word, so callers can make segments differ from the start.
  void append(Prompt& p, Rng& rng, int32_t len, int64_t first = -1) const;
  // Appends generated text (a reply): encoded with a tokenizer, as is without.
  void append_text(Prompt& p, std::string_view text) const;
  // Moves the prompt into `req`: prompt_tokens, prompt_text (decoded with a tokenizer) and prompt_len.
  void fill(BenchRequest& req, Prompt p) const;
  // Token count of a text: exact with a tokenizer, chars/4 (at least 1 for non-empty) without.
  int32_t count(std::string_view text) const;
  // The prompt as text: its tokens decoded, or its text.
  std::string as_text(const Prompt& p) const;
  // A text of `len` tokens (decoded) or ~4*len characters.
  std::string text(Rng& rng, int32_t len) const;

 private:
  const model::Tokenizer* tok_;
  std::vector<int32_t> pool_;  // ordinary tokens: no control, byte, unknown or non-printable ones
};

int32_t estimate_tokens(std::string_view text);

}  // namespace llmd::bench
