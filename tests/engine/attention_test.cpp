// Paged attention against a direct softmax(QK^T)V over contiguous K/V, for every kernel shape
// (vectorised 16-token blocks of head_dim 64/128, the generic path) and both cache types.
#include "engine/cpu/attention.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace llmd::engine::cpu {
namespace {

struct Shape {
  int n_head, n_head_kv, head_dim, block_size;
  KvDtype dtype;
};

class AttentionTest : public ::testing::TestWithParam<Shape> {};

TEST_P(AttentionTest, MatchesDirectSoftmaxOverContiguousCache) {
  const Shape sh = GetParam();
  const int hd = sh.head_dim, bs = sh.block_size, nkv = sh.n_head_kv;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // Two sequences: one prefilling 37 tokens after 21 cached, one decoding 1 token after 50.
  struct Seq {
    int cached, fresh;
  };
  const std::vector<Seq> seqs = {{21, 37}, {50, 1}};
  const int n_blocks = 16;
  std::vector<int32_t> order(n_blocks);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);

  const size_t pool_elems = static_cast<size_t>(n_blocks) * nkv * hd * bs;
  std::vector<float> kf(pool_elems), vf(pool_elems);
  std::vector<_Float16> kh(pool_elems), vh(pool_elems);
  std::vector<std::vector<float>> keys(seqs.size()),
      vals(seqs.size());  // [pos][g][d], rounded like the cache
  std::vector<std::vector<int32_t>> tables(seqs.size());
  int next_block = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int len = seqs[i].cached + seqs[i].fresh;
    for (int b = 0; b < (len + bs - 1) / bs; ++b) tables[i].push_back(order[next_block++]);
    for (int p = 0; p < len; ++p) {
      for (int g = 0; g < nkv; ++g) {
        for (int d = 0; d < hd; ++d) {
          float k = nd(rng), v = nd(rng);
          if (sh.dtype == KvDtype::kF16)
            k = static_cast<float>(static_cast<_Float16>(k)),
            v = static_cast<float>(static_cast<_Float16>(v));
          keys[i].push_back(k);
          vals[i].push_back(v);
          const int64_t blk = tables[i][p / bs], slot = p % bs;
          const int64_t ki = ((blk * nkv + g) * hd + d) * bs + slot,
                        vi = ((blk * nkv + g) * bs + slot) * hd + d;
          kf[ki] = k, vf[vi] = v, kh[ki] = static_cast<_Float16>(k), vh[vi] = static_cast<_Float16>(v);
        }
      }
    }
  }
  int n_tokens = 0;
  std::vector<AttentionSeq> aseqs;
  for (size_t i = 0; i < seqs.size(); ++i) {
    aseqs.push_back({n_tokens, seqs[i].fresh, seqs[i].cached, tables[i].data()});
    n_tokens += seqs[i].fresh;
  }
  const int64_t width = static_cast<int64_t>(sh.n_head) * hd;
  std::vector<float> q(n_tokens * width), out(n_tokens * width);
  for (auto& x : q) x = nd(rng);

  std::vector<AttentionTile> tiles;
  tiles.reserve(64);
  attention_tiles(aseqs, nkv, tiles);
  ThreadPool pool(2);
  std::vector<float> scratch(attention_scratch_floats(sh.n_head / nkv, hd) * pool.size());
  AttentionArgs a;
  a.q = q.data(), a.ldq = width, a.out = out.data(), a.ldo = width;
  a.k = sh.dtype == KvDtype::kF16 ? static_cast<const void*>(kh.data()) : kf.data();
  a.v = sh.dtype == KvDtype::kF16 ? static_cast<const void*>(vh.data()) : vf.data();
  a.dtype = sh.dtype, a.n_head = sh.n_head, a.n_head_kv = nkv, a.head_dim = hd, a.block_size = bs;
  a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  a.seqs = aseqs, a.tiles = tiles, a.scratch = scratch.data();
  attention(a, pool);

  for (size_t i = 0; i < seqs.size(); ++i) {
    for (int t = 0; t < seqs[i].fresh; ++t) {
      const int pos = seqs[i].cached + t, row = aseqs[i].first_token + t;
      for (int h = 0; h < sh.n_head; ++h) {
        const int g = h / (sh.n_head / nkv);
        const float* qh = q.data() + row * width + h * hd;
        std::vector<double> w(pos + 1);
        for (int j = 0; j <= pos; ++j) {
          double dot = 0;
          for (int d = 0; d < hd; ++d) dot += qh[d] * keys[i][(j * nkv + g) * hd + d];
          w[j] = dot * a.scale;
        }
        const double mx = *std::max_element(w.begin(), w.end());
        double sum = 0;
        for (double& x : w) sum += (x = std::exp(x - mx));
        for (int d = 0; d < hd; ++d) {
          double o = 0;
          for (int j = 0; j <= pos; ++j) o += w[j] * vals[i][(j * nkv + g) * hd + d];
          ASSERT_NEAR(out[row * width + h * hd + d], o / sum, 2e-5)
              << "seq " << i << " token " << t << " head " << h;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionTest,
    ::testing::Values(Shape{4, 2, 64, 16, KvDtype::kF16}, Shape{4, 4, 64, 16, KvDtype::kF32},
                      Shape{2, 1, 128, 16, KvDtype::kF16}, Shape{8, 4, 8, 16, KvDtype::kF32},
                      Shape{8, 2, 32, 32, KvDtype::kF16}, Shape{3, 3, 16, 8, KvDtype::kF16}));

}  // namespace
}  // namespace llmd::engine::cpu
