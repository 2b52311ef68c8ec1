// The attention kernel, written once in plain C++ whose inner loops the compiler vectorises; it is
// included by attention_{scalar,avx2,avx512}.cpp, each compiled for its instruction set into its
// own namespace LLMD_ISA_NS. Not a public header.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>

#include "engine/cpu/attention.hpp"
#include "engine/cpu/simd_impl.hpp"

namespace llmd::engine::cpu::LLMD_ISA_NS {

template <class KV, int BS>
void run_tile(const AttentionArgs& a, const AttentionTile& tile, float* scratch) {
  const int hd = a.head_dim;
  const int n_rep = a.n_head / a.n_head_kv;
  const AttentionSeq& s = a.seqs[tile.seq];
  const int n_rows = (tile.t1 - tile.t0) * n_rep;
  // Per row: running max, running sum, accumulator[hd]; then the current K and V block as floats.
  float* m = scratch;
  float* l = m + n_rows;
  float* acc = l + n_rows;
  float* kf = acc + static_cast<int64_t>(n_rows) * hd;
  float* vf = kf + static_cast<int64_t>(hd) * BS;
  std::fill(m, m + n_rows, -std::numeric_limits<float>::infinity());
  std::fill(l, l + n_rows, 0.0f);
  std::fill(acc, acc + static_cast<int64_t>(n_rows) * hd, 0.0f);

  const KV* kpool = static_cast<const KV*>(a.k);
  const KV* vpool = static_cast<const KV*>(a.v);
  const int last_pos = s.pos + tile.t1 - 1;
  const int n_blocks = last_pos / BS + 1;
  for (int b = 0; b < n_blocks; ++b) {
    const int64_t phys = s.block_table[b];
    const int64_t base = (phys * a.n_head_kv + tile.kv_head) * static_cast<int64_t>(hd) * BS;
    const float* kt;
    const float* vb;
    if constexpr (std::is_same_v<KV, float>) {
      kt = kpool + base;
      vb = vpool + base;
    } else {
      const int valid_rows = std::min(BS, last_pos - b * BS + 1);
      to_float(kpool + base, kf, hd * BS);
      to_float(vpool + base, vf, hd * valid_rows);
      kt = kf;
      vb = vf;
    }
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
          const float* krow = kt + static_cast<int64_t>(d) * BS;
          for (int j = 0; j < BS; ++j) sc[j] += qd * krow[j];
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
          const float* vrow = vb + static_cast<int64_t>(j) * hd;
          for (int d = 0; d < hd; ++d) ac[d] += pj * vrow[d];
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

// The common shape (16-token blocks, head_dim a multiple of 16) on GCC vector types: one score
// vector per block and the accumulator in registers.
// One query row against one 16-token block whose K ([HD][16]) and V ([16][HD]) are read as T
// (float, or f16 widened as it is loaded): updates the row's running max m, sum l and accumulator.
template <int HD, class T>
inline void attend_block(const float* q, const T* kt, const T* vb, int n_valid, float scale, float& m,
                         float& l, float* ac) {
  constexpr int BS = 16, NV = HD / 16;
  const v16i iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  const v16i valid = iota < n_valid;
  // Four partial sums: one chain of HD dependent FMAs would be latency-bound.
  v16f s0 = {}, s1 = {}, s2 = {}, s3 = {};
  for (int d = 0; d < HD; d += 4) {
    s0 += q[d] * load16(kt + d * BS);
    s1 += q[d + 1] * load16(kt + (d + 1) * BS);
    s2 += q[d + 2] * load16(kt + (d + 2) * BS);
    s3 += q[d + 3] * load16(kt + (d + 3) * BS);
  }
  v16f sc = (s0 + s1) + (s2 + s3);
  sc = valid ? sc * scale : v16f{} - std::numeric_limits<float>::infinity();
  const float m_new = std::max(m, reduce16<true>(sc));
  const v16f p = valid ? vexp(sc - m_new) : v16f{};
  const float corr = vexp(v16f{} + (m - m_new))[0];
  m = m_new;
  l = l * corr + reduce16<false>(p);
  v16f o[NV];
  for (int k = 0; k < NV; ++k) o[k] = load16(ac + 16 * k) * corr;
  for (int j = 0; j < n_valid; ++j)
    for (int k = 0; k < NV; ++k) o[k] += p[j] * load16(vb + j * HD + 16 * k);
  std::memcpy(ac, o, sizeof o);
}

// Rows of a tile at or below this count read f16 K/V directly, widening as they load; more rows
// share one widened copy of each block (prefill), so each element is converted once per tile.
constexpr int kDirectRows = 4;

template <class KV, int HD>
void run_tile_v16(const AttentionArgs& a, const AttentionTile& tile, float* scratch) {
  constexpr int BS = 16;
  const int n_rep = a.n_head / a.n_head_kv;
  const AttentionSeq& s = a.seqs[tile.seq];
  const int n_rows = (tile.t1 - tile.t0) * n_rep;
  float* m = scratch;
  float* l = m + n_rows;
  float* acc = l + n_rows;
  float* kf = acc + static_cast<int64_t>(n_rows) * HD;
  float* vf = kf + HD * BS;
  std::fill(m, m + n_rows, -std::numeric_limits<float>::infinity());
  std::fill(l, l + n_rows, 0.0f);
  std::fill(acc, acc + static_cast<int64_t>(n_rows) * HD, 0.0f);

  const KV* kpool = static_cast<const KV*>(a.k);
  const KV* vpool = static_cast<const KV*>(a.v);
  const bool direct = std::is_same_v<KV, float> || n_rows <= kDirectRows;
  const int last_pos = s.pos + tile.t1 - 1;
  const int n_blocks = last_pos / BS + 1;
  for (int b = 0; b < n_blocks; ++b) {
    const int64_t base = (s.block_table[b] * static_cast<int64_t>(a.n_head_kv) + tile.kv_head) * HD * BS;
    if constexpr (!std::is_same_v<KV, float>) {
      if (!direct) {
        to_float(kpool + base, kf, HD * BS);
        to_float(vpool + base, vf, HD * std::min(BS, last_pos - b * BS + 1));
      }
    }
    for (int t = tile.t0; t < tile.t1; ++t) {
      const int n_valid = std::min(BS, s.pos + t - b * BS + 1);
      if (n_valid <= 0) continue;  // the whole block is in this token's future
      for (int r = 0; r < n_rep; ++r) {
        const int row = (t - tile.t0) * n_rep + r;
        const float* q =
            a.q + (s.first_token + t) * a.ldq + static_cast<int64_t>(tile.kv_head * n_rep + r) * HD;
        float* ac = acc + static_cast<int64_t>(row) * HD;
        if (direct)
          attend_block<HD>(q, kpool + base, vpool + base, n_valid, a.scale, m[row], l[row], ac);
        else
          attend_block<HD>(q, static_cast<const float*>(kf), static_cast<const float*>(vf), n_valid, a.scale,
                           m[row], l[row], ac);
      }
    }
  }
  for (int t = tile.t0; t < tile.t1; ++t) {
    for (int r = 0; r < n_rep; ++r) {
      const int row = (t - tile.t0) * n_rep + r;
      float* out = a.out + (s.first_token + t) * a.ldo + static_cast<int64_t>(tile.kv_head * n_rep + r) * HD;
      const float inv = 1.0f / l[row];
      for (int d = 0; d < HD; ++d) out[d] = acc[static_cast<int64_t>(row) * HD + d] * inv;
    }
  }
}

template <class KV>
void run_tile_any(const AttentionArgs& a, const AttentionTile& tile, float* scratch) {
  if (a.block_size == 16 && a.head_dim == 64) return run_tile_v16<KV, 64>(a, tile, scratch);
  if (a.block_size == 16 && a.head_dim == 128) return run_tile_v16<KV, 128>(a, tile, scratch);
  switch (a.block_size) {
    case 16:
      return run_tile<KV, 16>(a, tile, scratch);
    case 32:
      return run_tile<KV, 32>(a, tile, scratch);
    case 8:
      return run_tile<KV, 8>(a, tile, scratch);
    case 64:
      return run_tile<KV, 64>(a, tile, scratch);
    default:
      std::abort();  // block sizes are validated when the backend is built
  }
}

void attention_tile(const AttentionArgs& a, const AttentionTile& tile, float* scratch) {
  if (a.dtype == KvDtype::kF16)
    run_tile_any<_Float16>(a, tile, scratch);
  else
    run_tile_any<float>(a, tile, scratch);
}

}  // namespace llmd::engine::cpu::LLMD_ISA_NS
