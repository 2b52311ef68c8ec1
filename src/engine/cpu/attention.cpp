#include "engine/cpu/attention.hpp"

#include <algorithm>

#include "engine/cpu/matmul.hpp"

namespace llmd::engine::cpu {

namespace scalar {
void attention_tile(const AttentionArgs& a, const AttentionTile& tile, float* scratch);
}
namespace avx2 {
void attention_tile(const AttentionArgs& a, const AttentionTile& tile, float* scratch);
}
namespace avx512 {
void attention_tile(const AttentionArgs& a, const AttentionTile& tile, float* scratch);
}

int64_t attention_scratch_floats(int32_t n_rep, int32_t head_dim) {
  constexpr int64_t kMaxBlockSize = 64;
  const int64_t rows = static_cast<int64_t>(kAttentionTileTokens) * n_rep;
  return rows * (2 + head_dim) + 2 * kMaxBlockSize * head_dim;
}

void attention_tiles(std::span<const AttentionSeq> seqs, int32_t n_head_kv,
                     std::vector<AttentionTile>& tiles) {
  for (int32_t i = 0; i < static_cast<int32_t>(seqs.size()); ++i) {
    for (int32_t t0 = 0; t0 < seqs[i].n_tokens; t0 += kAttentionTileTokens) {
      const int32_t t1 = std::min(seqs[i].n_tokens, t0 + kAttentionTileTokens);
      for (int32_t g = 0; g < n_head_kv; ++g) tiles.push_back({i, t0, t1, g});
    }
  }
}

void attention(const AttentionArgs& args, ThreadPool& pool) {
  using TileFn = void (*)(const AttentionArgs&, const AttentionTile&, float*);
  static const TileFn fn = [] {
    switch (detect_isa()) {
      case Isa::kAvx512:
        return &avx512::attention_tile;
      case Isa::kAvx2:
        return &avx2::attention_tile;
      default:
        return &scalar::attention_tile;
    }
  }();
  const int64_t per_thread = attention_scratch_floats(args.n_head / args.n_head_kv, args.head_dim);
  pool.parallel_for(static_cast<int64_t>(args.tiles.size()), [&](int64_t i, int thread) {
    fn(args, args.tiles[i], args.scratch + per_thread * thread);
  });
}

}  // namespace llmd::engine::cpu
