#include "engine/batch.hpp"

#include <fmt/format.h>

namespace llmd::engine {

std::expected<void, std::string> validate_batch(const Batch& batch, const BatchLimits& l) {
  if (static_cast<int64_t>(batch.seqs.size()) > l.max_seqs)
    return std::unexpected(
        fmt::format("batch has {} sequences, the limit is {}", batch.seqs.size(), l.max_seqs));
  int64_t n = 0;
  for (const BatchSeq& s : batch.seqs) {
    const int64_t len = static_cast<int64_t>(s.tokens.size());
    if (len == 0) return std::unexpected("a sequence in the batch has no new tokens");
    if (n + len > l.max_tokens)
      return std::unexpected(fmt::format("batch has more than {} tokens", l.max_tokens));
    if (s.pos < 0 || s.pos + len > l.max_seq_len)
      return std::unexpected(fmt::format("positions {}..{} exceed the maximum sequence length {}", s.pos,
                                         s.pos + len - 1, l.max_seq_len));
    const int64_t blocks_needed = (s.pos + len + l.block_size - 1) / l.block_size;
    if (static_cast<int64_t>(s.block_table.size()) < blocks_needed)
      return std::unexpected(
          fmt::format("block table covers {} blocks, {} needed", s.block_table.size(), blocks_needed));
    for (int64_t b = 0; b < blocks_needed; ++b)
      if (s.block_table[b] < 0 || s.block_table[b] >= l.n_blocks)
        return std::unexpected(fmt::format("block id {} is out of range", s.block_table[b]));
    for (const int32_t t : s.tokens)
      if (t < 0 || t >= l.n_vocab) return std::unexpected(fmt::format("token id {} is out of range", t));
    n += len;
  }
  return {};
}

}  // namespace llmd::engine
