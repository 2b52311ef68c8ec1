#pragma once
// A compute backend runs the model's forward pass over a batch against its own KV storage. The
// block ids it is given come from a BlockAllocator owned by the caller (the engine thread), which
// is the only thread that calls forward().
#include <cstdint>
#include <expected>
#include <optional>
#include <string>

#include "engine/batch.hpp"
#include "engine/kv_region.hpp"
#include "model/llama_config.hpp"

namespace llmd {
class SharedArena;
}

namespace llmd::engine {

enum class KvDtype { kF16, kF32 };

struct KvCacheConfig {
  static constexpr int32_t kDefaultBlockSize = 16;
  int32_t block_size = kDefaultBlockSize;
  int32_t n_blocks = 0;           // 0: enough for max_seq_len tokens of max_num_seqs sequences
  KvDtype dtype = KvDtype::kF16;  // llama.cpp's default cache type
};

struct BackendConfig {
  static constexpr int32_t kDefaultMaxBatchTokens = 2048;
  static constexpr int32_t kDefaultMaxSeqs = 64;
  int32_t threads = 0;                                // 0: all hardware threads
  int32_t max_batch_tokens = kDefaultMaxBatchTokens;  // tokens in one forward step
  int32_t max_seqs = kDefaultMaxSeqs;                 // sequences in one forward step
  int32_t max_seq_len = 0;                            // 0: the model's training context
  KvCacheConfig kv;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const model::LlamaConfig& config() const = 0;
  virtual int32_t block_size() const = 0;
  virtual int32_t n_blocks() const = 0;
  virtual int32_t max_seq_len() const = 0;
  virtual int32_t max_batch_tokens() const = 0;
  virtual std::string describe() const = 0;

  // Runs one step. `logits` receives n_vocab floats for each sequence with want_logits, in batch
  // order. Errors (batch too large, position past max_seq_len, bad block id) leave the KV cache of
  // the sequences in the batch undefined and are reported, not thrown.
  virtual std::expected<void, std::string> forward(const Batch& batch, float* logits) = 0;

  // The KV arena, for moving blocks between servers (P/D); nullopt where blocks cannot be moved.
  virtual std::optional<KvRegion> kv_region() { return std::nullopt; }
  // The same arena as shared memory another process on this host may map (the shm transfer
  // backend); nullptr when it is not in shared memory.
  virtual const SharedArena* kv_shared_arena() const { return nullptr; }
};

}  // namespace llmd::engine
