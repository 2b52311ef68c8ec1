// AVX2 + FMA + F16C kernels (Haswell and later, AMD Zen 1-3): the same packed layouts as AVX-512,
// read as 8-row halves of a 16-row group (the first 32 bytes of each 64-byte chunk are rows 0..7).
//
// Int8 has no vpdpbusd here; vpmaddubsw multiplies unsigned by signed bytes into saturating int16
// pairs, so the weights (stored w + 128) are flipped back to signed and the usual sign trick keeps
// both factors in range: |w| (unsigned) x (x with w's sign), pair sums <= 2 * 128 * 127 < 2^15.
#include <immintrin.h>

#include <cstring>

#include "engine/cpu/matmul_internal.hpp"

namespace llmd::engine::cpu {
namespace {

#define LLMD_INLINE inline __attribute__((always_inline))

constexpr int kUnitRows = 8;

LLMD_INLINE int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// A tile's row units: unit u is half (u % 2) of group g + u / 2.
template <int MU>
struct Units {
  int half[MU];
  const uint8_t* grp[MU];
  float* y[MU];      // output column of the unit's first row (token 0)
  __m256i mask[MU];  // rows that exist (the last group may be partial)
  bool full[MU];

  Units(const PackedMatrix::Impl& w_, float* y_, int64_t g, int unit0) {
    for (int u = 0; u < MU; ++u) {
      const int64_t gu = g + (unit0 + u) / 2;
      half[u] = (unit0 + u) % 2;
      grp[u] = w_.group(gu);
      const int64_t row0 = gu * kGroupRows + half[u] * kUnitRows;
      y[u] = y_ + row0;
      const int64_t left = w_.rows - row0;
      full[u] = left >= kUnitRows;
      mask[u] = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left < 0 ? 0 : left)),
                                   _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
  }
};

template <int MU>
LLMD_INLINE void store(const Units<MU>& us, int u, int64_t off, __m256 v) {
  if (us.full[u])
    _mm256_storeu_ps(us.y[u] + off, v);
  else
    _mm256_maskstore_ps(us.y[u] + off, us.mask[u], v);
}

// ---- int8 ----

template <int MU, int NT>
void int8_tile(const Units<MU>& us, int64_t nb, const MatmulInput::Impl& x, int64_t t, int64_t ldy) {
  const int8_t* xq[NT];
  const float* xd[NT];
#pragma GCC unroll 16
  for (int n = 0; n < NT; ++n) {
    xq[n] = x.qrow(t + n);
    xd[n] = x.drow(t + n);
  }
  const uint8_t* wq[MU];
  const uint8_t* sc[MU];
#pragma GCC unroll 16
  for (int u = 0; u < MU; ++u) {
    wq[u] = us.grp[u] + us.half[u] * 32;
    sc[u] = us.grp[u] + nb * kBlockBytes + us.half[u] * 16;
  }
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 facc[MU][NT];
#pragma GCC unroll 16
  for (int u = 0; u < MU; ++u)
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n) facc[u][n] = _mm256_setzero_ps();

  for (int64_t b = 0; b < nb; ++b) {
    __m256i acc[MU][NT];
#pragma GCC unroll 16
    for (int u = 0; u < MU; ++u)
#pragma GCC unroll 16
      for (int n = 0; n < NT; ++n) acc[u][n] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      __m256i s[MU], a[MU];
#pragma GCC unroll 16
      for (int u = 0; u < MU; ++u) {
        s[u] = _mm256_xor_si256(
            _mm256_load_si256(reinterpret_cast<const __m256i*>(wq[u] + b * kBlockBytes + j * 64)), flip);
        a[u] = _mm256_abs_epi8(s[u]);
      }
#pragma GCC unroll 16
      for (int n = 0; n < NT; ++n) {
        const __m256i xv = _mm256_set1_epi32(load_i32(xq[n] + b * 32 + j * 4));
#pragma GCC unroll 16
        for (int u = 0; u < MU; ++u) {
          const __m256i p = _mm256_maddubs_epi16(a[u], _mm256_sign_epi8(xv, s[u]));
          acc[u][n] = _mm256_add_epi32(acc[u][n], _mm256_madd_epi16(p, ones));
        }
      }
    }
#pragma GCC unroll 16
    for (int u = 0; u < MU; ++u) {
      const __m256 dw = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(sc[u] + b * 32)));
#pragma GCC unroll 16
      for (int n = 0; n < NT; ++n)
        facc[u][n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[u][n]),
                                     _mm256_mul_ps(dw, _mm256_set1_ps(xd[n][b])), facc[u][n]);
    }
  }
#pragma GCC unroll 16
  for (int u = 0; u < MU; ++u)
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n) store(us, u, (t + n) * ldy, facc[u][n]);
}

template <int MU, int N>
LLMD_INLINE void int8_tail(int64_t rem, const Units<MU>& us, int64_t nb, const MatmulInput::Impl& x,
                           int64_t t, int64_t ldy) {
  if constexpr (N > 0) {
    if (rem == N)
      int8_tile<MU, N>(us, nb, x, t, ldy);
    else
      int8_tail<MU, N - 1>(rem, us, nb, x, t, ldy);
  }
}

template <int MU, int NTMAX>
void int8_panel(const PackedMatrix::Impl& w, const MatmulInput::Impl& x, float* y, int64_t ldy, int64_t g,
                int unit0, int64_t t0, int64_t t1) {
  const Units<MU> us(w, y, g, unit0);
  const int64_t nb = w.cols / 32;
  int64_t t = t0;
  for (; t + NTMAX <= t1; t += NTMAX) int8_tile<MU, NTMAX>(us, nb, x, t, ldy);
  int8_tail<MU, NTMAX - 1>(t1 - t, us, nb, x, t, ldy);
}

void int8_range(const PackedMatrix::Impl& w, const MatmulInput::Impl& x, float* y, int64_t ldy, int64_t g0,
                int64_t g1, int64_t t0, int64_t t1) {
  for (int64_t g = g0; g < g1; ++g) {
    if (t1 - t0 <= 3) {
      int8_panel<2, 1>(w, x, y, ldy, g, 0, t0, t1);
    } else {
      int8_panel<1, 4>(w, x, y, ldy, g, 0, t0, t1);
      if (g * kGroupRows + kUnitRows < w.rows) int8_panel<1, 4>(w, x, y, ldy, g, 1, t0, t1);
    }
  }
}

// ---- float weights ----

template <PackKind K, int MU, int NT>
void float_tile(const Units<MU>& us, int64_t cols, const float* x, int64_t ldx, int64_t t, int64_t ldy) {
  __m256 acc[MU][NT];
#pragma GCC unroll 16
  for (int u = 0; u < MU; ++u)
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n) acc[u][n] = _mm256_setzero_ps();
  const float* xr = x + t * ldx;
  auto fma_col = [&](const __m256* wv, int64_t k) __attribute__((always_inline)) {
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n) {
      const __m256 xv = _mm256_broadcast_ss(xr + n * ldx + k);
#pragma GCC unroll 16
      for (int u = 0; u < MU; ++u) acc[u][n] = _mm256_fmadd_ps(wv[u], xv, acc[u][n]);
    }
  };
  if constexpr (K == PackKind::kBF16) {
    const __m256i hi = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
    const int64_t pairs = cols / 2;
    for (int64_t p = 0; p < pairs; ++p) {
      __m256i v[MU];
      __m256 wv[MU];
#pragma GCC unroll 16
      for (int u = 0; u < MU; ++u)
        v[u] = _mm256_load_si256(reinterpret_cast<const __m256i*>(us.grp[u] + p * 64 + us.half[u] * 32));
#pragma GCC unroll 16
      for (int u = 0; u < MU; ++u) wv[u] = _mm256_castsi256_ps(_mm256_slli_epi32(v[u], 16));
      fma_col(wv, 2 * p);
#pragma GCC unroll 16
      for (int u = 0; u < MU; ++u) wv[u] = _mm256_castsi256_ps(_mm256_and_si256(v[u], hi));
      fma_col(wv, 2 * p + 1);
    }
    if (cols & 1) {
      __m256 wv[MU];
#pragma GCC unroll 16
      for (int u = 0; u < MU; ++u)
        wv[u] = _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_load_si256(reinterpret_cast<const __m256i*>(us.grp[u] + pairs * 64 + us.half[u] * 32)),
            16));
      fma_col(wv, cols - 1);
    }
  } else {
    for (int64_t k = 0; k < cols; ++k) {
      __m256 wv[MU];
#pragma GCC unroll 16
      for (int u = 0; u < MU; ++u) {
        if constexpr (K == PackKind::kF32)
          wv[u] = _mm256_load_ps(reinterpret_cast<const float*>(us.grp[u] + k * 64 + us.half[u] * 32));
        else
          wv[u] = _mm256_cvtph_ps(
              _mm_load_si128(reinterpret_cast<const __m128i*>(us.grp[u] + k * 32 + us.half[u] * 16)));
      }
      fma_col(wv, k);
    }
  }
#pragma GCC unroll 16
  for (int u = 0; u < MU; ++u)
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n) store(us, u, (t + n) * ldy, acc[u][n]);
}

template <PackKind K, int MU, int N>
LLMD_INLINE void float_tail(int64_t rem, const Units<MU>& us, int64_t cols, const float* x, int64_t ldx,
                            int64_t t, int64_t ldy) {
  if constexpr (N > 0) {
    if (rem == N)
      float_tile<K, MU, N>(us, cols, x, ldx, t, ldy);
    else
      float_tail<K, MU, N - 1>(rem, us, cols, x, ldx, t, ldy);
  }
}

template <PackKind K, int MU, int NTMAX>
void float_panel(const PackedMatrix::Impl& w, const MatmulInput::Impl& x, float* y, int64_t ldy, int64_t g,
                 int64_t t0, int64_t t1) {
  const Units<MU> us(w, y, g, 0);
  int64_t t = t0;
  for (; t + NTMAX <= t1; t += NTMAX) float_tile<K, MU, NTMAX>(us, w.cols, x.x, x.ld, t, ldy);
  float_tail<K, MU, NTMAX - 1>(t1 - t, us, w.cols, x.x, x.ld, t, ldy);
}

template <PackKind K>
void float_range(const PackedMatrix::Impl& w, const MatmulInput::Impl& x, float* y, int64_t ldy, int64_t g0,
                 int64_t g1, int64_t t0, int64_t t1) {
  int64_t g = g0;
  if (t1 - t0 <= 2) {
    for (; g + 2 <= g1; g += 2) float_panel<K, 4, 2>(w, x, y, ldy, g, t0, t1);
    if (g < g1) float_panel<K, 2, 2>(w, x, y, ldy, g, t0, t1);
  } else {
    for (; g < g1; ++g) float_panel<K, 2, 6>(w, x, y, ldy, g, t0, t1);
  }
}

// ---- activation quantization (bit-identical to the scalar quantize_block_q8) ----

void quantize(const float* src, int64_t ld, int64_t t0, int64_t t1, MatmulInput::Impl& x) {
  const int64_t nb = x.cols / 32;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t t = t0; t < t1; ++t) {
    auto* q = const_cast<int8_t*>(x.qrow(t));
    auto* d = const_cast<float*>(x.drow(t));
    auto* c = const_cast<int32_t*>(x.crow(t));
    const float* s = src + t * ld;
    for (int64_t b = 0; b < nb; ++b) {
      __m256 v[4];
      for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(s + b * 32 + i * 8);
      __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                               _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
      const float amax = _mm_cvtss_f32(m4);
      d[b] = _cvtsh_ss(_cvtss_sh(amax / 127.0f, _MM_FROUND_TO_NEAREST_INT));
      const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
      __m256i iv[4];
      for (int i = 0; i < 4; ++i)
        iv[i] = _mm256_cvtps_epi32(
            _mm256_round_ps(_mm256_mul_ps(v[i], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      __m256i sum = _mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3]));
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
      c[b] = -128 * _mm_cvtsi128_si32(s4);
      const __m256i p =
          _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]), _mm256_packs_epi32(iv[2], iv[3]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * 32), _mm256_permutevar8x32_epi32(p, perm));
    }
  }
}

}  // namespace

const KernelSet& avx2_kernels() {
  static const KernelSet ks{int8_range,
                            float_range<PackKind::kF32>,
                            float_range<PackKind::kF16>,
                            float_range<PackKind::kBF16>,
                            quantize,
                            2};
  return ks;
}

}  // namespace llmd::engine::cpu
