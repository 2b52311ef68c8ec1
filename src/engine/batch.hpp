#pragma once
// The input of one forward step: any mix of sequences, each with any number of new tokens (a
// prefill chunk or a single decode token) placed at consecutive positions from `pos`, and the
// block table that maps its positions to KV blocks (position p lives in block_table[p / block_size]).
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <vector>

namespace llmd::engine {

struct BatchSeq {
  std::span<const int32_t> tokens;       // new tokens, at positions pos .. pos + size - 1
  int32_t pos = 0;                       // tokens already in the KV cache for this sequence
  std::span<const int32_t> block_table;  // must cover every position up to pos + size - 1
  bool want_logits = true;               // logits of the last new token are returned
};

struct Batch {
  std::vector<BatchSeq> seqs;  // reused step to step: clear() keeps the capacity

  void clear() { seqs.clear(); }
  int64_t n_tokens() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += static_cast<int64_t>(s.tokens.size());
    return n;
  }
  int64_t n_logits() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += s.want_logits ? 1 : 0;
    return n;
  }
};

// What a backend can take in one step.
struct BatchLimits {
  int32_t max_seqs = 0, max_tokens = 0, max_seq_len = 0, block_size = 0, n_blocks = 0;
  int64_t n_vocab = 0;
};

// The checks every backend makes before a step, in one wording: sequence and token counts,
// positions, block tables covering them with ids in range, token ids in the vocabulary.
std::expected<void, std::string> validate_batch(const Batch& batch, const BatchLimits& limits);

}  // namespace llmd::engine
