// AVX-512 kernels (F/BW/VL/DQ + VNNI): Intel Xeon since Cascade Lake, AMD Zen 4 and later.
//
// Int8: a tile is MR row groups (16 rows each) x NT tokens. Per 4 columns one 64-byte load per
// group feeds NT vpdpbusd, one per token's broadcast 4 activation bytes; each 32-column block
// ends with int32 -> float, times (row scales x token scale), added into a float accumulator. MR x NT
// int32 plus MR x NT float accumulators live in the 32 zmm registers: 2 x 6 for prompts (12 dot
// products per 2 weight loads + 6 broadcasts), 4 x <=3 for decode (more rows per pass over the
// activations, memory-bound anyway).
//
// GCC 12 warns about the _mm512_undefined_*() operands inside its own intrinsics (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "engine/cpu/matmul_internal.hpp"

namespace llmd::engine::cpu {
namespace {

#define LLMD_INLINE inline __attribute__((always_inline))

LLMD_INLINE __mmask16 row_mask(const PackedMatrix::Impl& w, int64_t g) {
  const int64_t left = w.rows - g * kGroupRows;
  return left >= kGroupRows ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
}

LLMD_INLINE int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---- int8 ----

template <int MR, int NT>
void int8_tile(const uint8_t* w, int64_t gs, int64_t nb, const MatmulInput::Impl& x, int64_t t, float* y,
               int64_t ldy, const __mmask16* mask) {
  const int8_t* xq[NT];
  const float* xd[NT];
  const int32_t* xc[NT];
#pragma GCC unroll 16
  for (int n = 0; n < NT; ++n) {
    xq[n] = x.qrow(t + n);
    xd[n] = x.drow(t + n);
    xc[n] = x.crow(t + n);
  }
  __m512 facc[MR][NT];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n) facc[r][n] = _mm512_setzero_ps();
  const uint8_t* sc = w + nb * kBlockBytes;

  for (int64_t b = 0; b < nb; ++b) {
    __m512i acc[MR][NT];
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n) {
      const __m512i c = _mm512_set1_epi32(xc[n][b]);  // -128 * sum(x quants): undoes the +128
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) acc[r][n] = c;
    }
    const uint8_t* wb = w + b * kBlockBytes;
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      __m512i wv[MR];
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) wv[r] = _mm512_load_si512(wb + r * gs + j * 64);
#pragma GCC unroll 16
      for (int n = 0; n < NT; ++n) {
        const __m512i xv = _mm512_set1_epi32(load_i32(xq[n] + b * 32 + j * 4));
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) acc[r][n] = _mm512_dpbusd_epi32(acc[r][n], wv[r], xv);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 dw =
          _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sc + r * gs + b * 32)));
#pragma GCC unroll 16
      for (int n = 0; n < NT; ++n)
        facc[r][n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][n]),
                                     _mm512_mul_ps(dw, _mm512_set1_ps(xd[n][b])), facc[r][n]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n)
      _mm512_mask_storeu_ps(y + (t + n) * ldy + r * kGroupRows, mask[r], facc[r][n]);
}

template <int MR, int N>
LLMD_INLINE void int8_tail(int64_t rem, const uint8_t* w, int64_t gs, int64_t nb, const MatmulInput::Impl& x,
                           int64_t t, float* y, int64_t ldy, const __mmask16* mask) {
  if constexpr (N > 0) {
    if (rem == N)
      int8_tile<MR, N>(w, gs, nb, x, t, y, ldy, mask);
    else
      int8_tail<MR, N - 1>(rem, w, gs, nb, x, t, y, ldy, mask);
  }
}

// Row groups [g, g + MR) for tokens [t0, t1): the weight panel stays in L1/L2 across token tiles.
template <int MR, int NTMAX>
void int8_panel(const PackedMatrix::Impl& w, const MatmulInput::Impl& x, float* y, int64_t ldy, int64_t g,
                int64_t t0, int64_t t1) {
  __mmask16 mask[MR];
  for (int r = 0; r < MR; ++r) mask[r] = row_mask(w, g + r);
  const uint8_t* wp = w.group(g);
  float* yp = y + g * kGroupRows;
  const int64_t nb = w.cols / 32;
  int64_t t = t0;
  for (; t + NTMAX <= t1; t += NTMAX) int8_tile<MR, NTMAX>(wp, w.group_bytes, nb, x, t, yp, ldy, mask);
  int8_tail<MR, NTMAX - 1>(t1 - t, wp, w.group_bytes, nb, x, t, yp, ldy, mask);
}

void int8_range(const PackedMatrix::Impl& w, const MatmulInput::Impl& x, float* y, int64_t ldy, int64_t g0,
                int64_t g1, int64_t t0, int64_t t1) {
  int64_t g = g0;
  if (t1 - t0 <= 3) {
    for (; g + 4 <= g1; g += 4) int8_panel<4, 3>(w, x, y, ldy, g, t0, t1);
    switch (g1 - g) {
      case 3:
        int8_panel<3, 3>(w, x, y, ldy, g, t0, t1);
        break;
      case 2:
        int8_panel<2, 3>(w, x, y, ldy, g, t0, t1);
        break;
      case 1:
        int8_panel<1, 3>(w, x, y, ldy, g, t0, t1);
        break;
      default:
        break;
    }
  } else {
    for (; g + 2 <= g1; g += 2) int8_panel<2, 6>(w, x, y, ldy, g, t0, t1);
    if (g < g1) int8_panel<1, 6>(w, x, y, ldy, g, t0, t1);
  }
}

// ---- float weights ----

template <PackKind K, int MR, int NT>
void float_tile(const uint8_t* w, int64_t gs, int64_t cols, const float* x, int64_t ldx, float* y,
                int64_t ldy, const __mmask16* mask) {
  __m512 acc[MR][NT];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n) acc[r][n] = _mm512_setzero_ps();
  auto fma_col = [&](const __m512* wv, int64_t k) __attribute__((always_inline)) {
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n) {
      const __m512 xv = _mm512_set1_ps(x[n * ldx + k]);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) acc[r][n] = _mm512_fmadd_ps(wv[r], xv, acc[r][n]);
    }
  };
  if constexpr (K == PackKind::kBF16) {
    const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
    const int64_t pairs = cols / 2;
    for (int64_t p = 0; p < pairs; ++p) {
      __m512i v[MR];
      __m512 wv[MR];
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) v[r] = _mm512_load_si512(w + r * gs + p * 64);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) wv[r] = _mm512_castsi512_ps(_mm512_slli_epi32(v[r], 16));
      fma_col(wv, 2 * p);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) wv[r] = _mm512_castsi512_ps(_mm512_and_si512(v[r], hi));
      fma_col(wv, 2 * p + 1);
    }
    if (cols & 1) {
      __m512 wv[MR];
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r)
        wv[r] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_load_si512(w + r * gs + pairs * 64), 16));
      fma_col(wv, cols - 1);
    }
  } else {
#pragma GCC unroll 2
    for (int64_t k = 0; k < cols; ++k) {
      __m512 wv[MR];
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        if constexpr (K == PackKind::kF32)
          wv[r] = _mm512_load_ps(reinterpret_cast<const float*>(w + r * gs + k * 64));
        else
          wv[r] = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(w + r * gs + k * 32)));
      }
      fma_col(wv, k);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n) _mm512_mask_storeu_ps(y + n * ldy + r * kGroupRows, mask[r], acc[r][n]);
}

template <PackKind K, int MR, int N>
LLMD_INLINE void float_tail(int64_t rem, const uint8_t* w, int64_t gs, int64_t cols, const float* x,
                            int64_t ldx, float* y, int64_t ldy, const __mmask16* mask) {
  if constexpr (N > 0) {
    if (rem == N)
      float_tile<K, MR, N>(w, gs, cols, x, ldx, y, ldy, mask);
    else
      float_tail<K, MR, N - 1>(rem, w, gs, cols, x, ldx, y, ldy, mask);
  }
}

template <PackKind K, int MR, int NTMAX>
void float_panel(const PackedMatrix::Impl& w, const MatmulInput::Impl& x, float* y, int64_t ldy, int64_t g,
                 int64_t t0, int64_t t1) {
  __mmask16 mask[MR];
  for (int r = 0; r < MR; ++r) mask[r] = row_mask(w, g + r);
  const uint8_t* wp = w.group(g);
  float* yp = y + g * kGroupRows;
  int64_t t = t0;
  for (; t + NTMAX <= t1; t += NTMAX)
    float_tile<K, MR, NTMAX>(wp, w.group_bytes, w.cols, x.x + t * x.ld, x.ld, yp + t * ldy, ldy, mask);
  float_tail<K, MR, NTMAX - 1>(t1 - t, wp, w.group_bytes, w.cols, x.x + t * x.ld, x.ld, yp + t * ldy, ldy,
                               mask);
}

template <PackKind K>
void float_range(const PackedMatrix::Impl& w, const MatmulInput::Impl& x, float* y, int64_t ldy, int64_t g0,
                 int64_t g1, int64_t t0, int64_t t1) {
  int64_t g = g0;
  if (t1 - t0 <= 4) {
    for (; g + 4 <= g1; g += 4) float_panel<K, 4, 4>(w, x, y, ldy, g, t0, t1);
    for (; g < g1; ++g) float_panel<K, 1, 4>(w, x, y, ldy, g, t0, t1);
  } else {
    for (; g + 2 <= g1; g += 2) float_panel<K, 2, 12>(w, x, y, ldy, g, t0, t1);
    if (g < g1) float_panel<K, 1, 12>(w, x, y, ldy, g, t0, t1);
  }
}

// ---- activation quantization (bit-identical to the scalar quantize_block_q8) ----

void quantize(const float* src, int64_t ld, int64_t t0, int64_t t1, MatmulInput::Impl& x) {
  const int64_t nb = x.cols / 32;
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (int64_t t = t0; t < t1; ++t) {
    auto* q = const_cast<int8_t*>(x.qrow(t));
    auto* d = const_cast<float*>(x.drow(t));
    auto* c = const_cast<int32_t*>(x.crow(t));
    const float* s = src + t * ld;
    for (int64_t b = 0; b < nb; ++b) {
      const __m512 v0 = _mm512_loadu_ps(s + b * 32);
      const __m512 v1 = _mm512_loadu_ps(s + b * 32 + 16);
      const float amax =
          _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
      d[b] = _cvtsh_ss(_cvtss_sh(amax / 127.0f, _MM_FROUND_TO_NEAREST_INT));
      const __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
      const __m512i i0 =
          _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512i i1 =
          _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * 32), _mm512_cvtepi32_epi8(i0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * 32 + 16), _mm512_cvtepi32_epi8(i1));
      c[b] = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    }
  }
}

}  // namespace

const KernelSet& avx512_kernels() {
  static const KernelSet ks{int8_range,
                            float_range<PackKind::kF32>,
                            float_range<PackKind::kF16>,
                            float_range<PackKind::kBF16>,
                            quantize,
                            4};
  return ks;
}

}  // namespace llmd::engine::cpu
