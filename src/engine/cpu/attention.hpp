#pragma once
// Causal attention of new query tokens against a paged KV cache (flash-attention style: one pass
// over the KV blocks with an online softmax, so nothing of context size is materialised).
//
// Cache layout of one layer, per block b and KV head g: K as [head_dim][block_size] (dimension-
// major, so the scores of a whole block are one vector FMA per dimension) and V as
// [block_size][head_dim].
#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend.hpp"
#include "engine/cpu/thread_pool.hpp"

namespace llmd::engine::cpu {

struct AttentionSeq {
  int32_t first_token = 0;  // row of its first new token in q/out
  int32_t n_tokens = 0;
  int32_t pos = 0;  // position of its first new token
  const int32_t* block_table = nullptr;
};

// One unit of parallel work: a tile of consecutive query tokens of one sequence, for one KV head.
struct AttentionTile {
  int32_t seq = 0;
  int32_t t0 = 0, t1 = 0;  // token range within the sequence
  int32_t kv_head = 0;
};

struct AttentionArgs {
  const float* q = nullptr;  // [tokens][n_head * head_dim], row stride ldq
  int64_t ldq = 0;
  float* out = nullptr;  // [tokens][n_head * head_dim], row stride ldo
  int64_t ldo = 0;
  const void* k = nullptr;  // this layer's K pool
  const void* v = nullptr;  // this layer's V pool
  KvDtype dtype = KvDtype::kF16;
  int32_t n_head = 0, n_head_kv = 0, head_dim = 0, block_size = 0;
  float scale = 1.0f;
  std::span<const AttentionSeq> seqs;
  std::span<const AttentionTile> tiles;
  float* scratch = nullptr;  // attention_scratch_floats() floats per thread
};

constexpr int32_t kAttentionTileTokens = 16;
int64_t attention_scratch_floats(int32_t n_rep, int32_t head_dim);

// Appends the tiles of `seqs` to `tiles` (which must have the capacity: no allocation).
void attention_tiles(std::span<const AttentionSeq> seqs, int32_t n_head_kv,
                     std::vector<AttentionTile>& tiles);

void attention(const AttentionArgs& args, ThreadPool& pool);

}  // namespace llmd::engine::cpu
