// The attention kernel, written once in plain C++ whose inner loops the compiler vectorises; it is
// included by attention_{scalar,avx2,avx512}.cpp, each compiled for its instruction set into its
// own namespace LLMD_ISA_NS. Not a public header.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "engine/cpu/attention.hpp"

namespace llmd::engine::cpu::LLMD_ISA_NS {

// exp for the softmax, on n floats, branch-free so it vectorises (Cephes polynomial, ~1 ulp).
inline void exp_inplace(float* x, int n) {
  for (int i = 0; i < n; ++i) {
    float v = std::clamp(x[i], -87.0f, 88.0f);
    const float t = v * 1.44269504088896341f;
    const float fn = (t + 12582912.0f) - 12582912.0f;  // round to nearest, valid for |t| < 2^22
    v = v - fn * 0.693359375f + fn * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * v + 1.3981999507e-3f;
    y = y * v + 8.3334519073e-3f;
    y = y * v + 4.1665795894e-2f;
    y = y * v + 1.6666665459e-1f;
    y = y * v + 5.0000001201e-1f;
    y = y * v * v + v + 1.0f;
    const int32_t e = (static_cast<int32_t>(fn) + 127) << 23;
    x[i] = y * std::bit_cast<float>(e);
  }
}

template <class KV, int BS>
void run_tile(const AttentionArgs& a, const AttentionTile& tile, float* scratch) {
  const int hd = a.head_dim;
  const int n_rep = a.n_head / a.n_head_kv;
  const AttentionSeq& s = a.seqs[tile.seq];
  const int n_rows = (tile.t1 - tile.t0) * n_rep;
  // Per row: running max, running sum, accumulator[hd].
  float* m = scratch;
  float* l = m + n_rows;
  float* acc = l + n_rows;
  std::fill(m, m + n_rows, -std::numeric_limits<float>::infinity());
  std::fill(l, l + n_rows, 0.0f);
  std::fill(acc, acc + static_cast<int64_t>(n_rows) * hd, 0.0f);

  const KV* kpool = static_cast<const KV*>(a.k);
  const KV* vpool = static_cast<const KV*>(a.v);
  const int last_pos = s.pos + tile.t1 - 1;
  const int n_blocks = last_pos / BS + 1;
  for (int b = 0; b < n_blocks; ++b) {
    const int64_t phys = s.block_table[b];
    const KV* kt = kpool + (phys * a.n_head_kv + tile.kv_head) * static_cast<int64_t>(hd) * BS;
    const KV* vb = vpool + (phys * a.n_head_kv + tile.kv_head) * static_cast<int64_t>(hd) * BS;
    for (int t = tile.t0; t < tile.t1; ++t) {
      const int qpos = s.pos + t;
      const int n_valid = std::min(BS, qpos - b * BS + 1);
      if (n_valid <= 0) continue;  // the whole block is in this token's future
      for (int r = 0; r < n_rep; ++r) {
        const int row = (t - tile.t0) * n_rep + r;
        const int h = tile.kv_head * n_rep + r;
        const float* q = a.q + (s.first_token + t) * a.ldq + static_cast<int64_t>(h) * hd;
        float sc[BS];
        for (int j = 0; j < BS; ++j) sc[j] = 0.0f;
        for (int d = 0; d < hd; ++d) {
          const float qd = q[d];
          const KV* krow = kt + static_cast<int64_t>(d) * BS;
          for (int j = 0; j < BS; ++j) sc[j] += qd * static_cast<float>(krow[j]);
        }
        float bmax = -std::numeric_limits<float>::infinity();
        for (int j = 0; j < BS; ++j) {
          sc[j] = j < n_valid ? sc[j] * a.scale : -std::numeric_limits<float>::infinity();
          bmax = std::max(bmax, sc[j]);
        }
        const float m_new = std::max(m[row], bmax);
        float corr = m[row] - m_new;
        for (int j = 0; j < BS; ++j) sc[j] -= m_new;
        exp_inplace(sc, BS);
        exp_inplace(&corr, 1);
        float sum = 0.0f;
        for (int j = 0; j < BS; ++j) {
          sc[j] = j < n_valid ? sc[j] : 0.0f;
          sum += sc[j];
        }
        m[row] = m_new;
        l[row] = l[row] * corr + sum;
        float* ac = acc + static_cast<int64_t>(row) * hd;
        for (int d = 0; d < hd; ++d) ac[d] *= corr;
        for (int j = 0; j < n_valid; ++j) {
          const float pj = sc[j];
          const KV* vrow = vb + static_cast<int64_t>(j) * hd;
          for (int d = 0; d < hd; ++d) ac[d] += pj * static_cast<float>(vrow[d]);
        }
      }
    }
  }
  for (int t = tile.t0; t < tile.t1; ++t) {
    for (int r = 0; r < n_rep; ++r) {
      const int row = (t - tile.t0) * n_rep + r;
      const int h = tile.kv_head * n_rep + r;
      float* o = a.out + (s.first_token + t) * a.ldo + static_cast<int64_t>(h) * hd;
      const float inv = 1.0f / l[row];
      const float* ac = acc + static_cast<int64_t>(row) * hd;
      for (int d = 0; d < hd; ++d) o[d] = ac[d] * inv;
    }
  }
}

template <class KV>
void run_tile_any(const AttentionArgs& a, const AttentionTile& tile, float* scratch) {
  switch (a.block_size) {
    case 16: return run_tile<KV, 16>(a, tile, scratch);
    case 32: return run_tile<KV, 32>(a, tile, scratch);
    case 8: return run_tile<KV, 8>(a, tile, scratch);
    case 64: return run_tile<KV, 64>(a, tile, scratch);
    default: std::abort();  // block sizes are validated when the backend is built
  }
}

void attention_tile(const AttentionArgs& a, const AttentionTile& tile, float* scratch) {
  if (a.dtype == KvDtype::kF16)
    run_tile_any<_Float16>(a, tile, scratch);
  else
    run_tile_any<float>(a, tile, scratch);
}

}  // namespace llmd::engine::cpu::LLMD_ISA_NS
