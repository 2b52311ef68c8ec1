// Vector building blocks shared by the per-ISA kernel files (attention, element-wise ops). Each
// including .cpp defines LLMD_ISA_NS and is compiled for its ISA. Not a public header.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif

namespace llmd::engine::cpu::LLMD_ISA_NS {

// Widens n KV elements to float. GCC does not vectorise _Float16 -> float loops by itself, and the
// conversion is half of the attention's work when done per element, so it is done here once per
// block with the ISA's converter and the dot products then run on floats.
inline void to_float(const _Float16* src, float* dst, int n) {
  int i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
  for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

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

// Narrows n floats to half precision (round to nearest even).
inline void to_half(const float* src, _Float16* dst, int n) {
  int i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(
        reinterpret_cast<__m256i*>(dst + i),
        _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(
        reinterpret_cast<__m128i*>(dst + i),
        _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
  for (; i < n; ++i) dst[i] = static_cast<_Float16>(src[i]);
}

// 16-float vectors in GCC's vector extension: the compiler maps them to one zmm, two ymm or four
// xmm registers, whichever the file's ISA has. Reductions are shuffle trees, because a plain loop
// is reduced in strict order, one dependent scalar operation after another.
using v16f = float __attribute__((vector_size(64)));
using v16i = int32_t __attribute__((vector_size(64)));

inline v16f load16(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// 16 halves widened as they are loaded.
inline v16f load16(const _Float16* p) {
  v16f v;
#if defined(__AVX512F__)
  const __m512 w = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  std::memcpy(&v, &w, sizeof v);
#elif defined(__F16C__)
  const __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
  std::memcpy(&v, &lo, sizeof lo);
  std::memcpy(reinterpret_cast<char*>(&v) + sizeof lo, &hi, sizeof hi);
#else
  for (int i = 0; i < 16; ++i) v[i] = static_cast<float>(p[i]);
#endif
  return v;
}

inline v16f vexp(v16f x) {  // the polynomial of exp_inplace, on a vector
  const v16f lo = v16f{} - 87.0f, hi = v16f{} + 88.0f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const v16f fn = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  x = x - fn * 0.693359375f + fn * 2.12194440e-4f;
  v16f y = v16f{} + 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * x * x + x + 1.0f;
  const v16i e = (__builtin_convertvector(fn, v16i) + 127) << 23;
  v16f pow2n;
  std::memcpy(&pow2n, &e, sizeof pow2n);
  return y * pow2n;
}

template <bool Max>
inline float reduce16(v16f v) {
  const v16i m8 = {8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7};
  const v16i m4 = {4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11};
  const v16i m2 = {2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13};
  const v16i m1 = {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14};
  for (const v16i& m : {m8, m4, m2, m1}) {
    const v16f w = __builtin_shuffle(v, m);
    if constexpr (Max)
      v = v > w ? v : w;
    else
      v = v + w;
  }
  return v[0];
}

}  // namespace llmd::engine::cpu::LLMD_ISA_NS
