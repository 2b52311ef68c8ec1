// Portable kernels: the reference the SIMD ones are tested against, and the fallback for CPUs
// without AVX2. Same packed layouts, same integer sums, so results match the SIMD kernels to
// float rounding.
#include <algorithm>
#include <cmath>

#include "common/float16.hpp"
#include "engine/cpu/matmul_internal.hpp"
#include "engine/cpu/quant.hpp"

namespace llmd::engine::cpu {
namespace {

void store_group(const float* acc, float* y, int64_t rows_left) {
  const int64_t n = std::min<int64_t>(kGroupRows, rows_left);
  for (int64_t r = 0; r < n; ++r) y[r] = acc[r];
}

void int8_range(const PackedMatrix::Impl& w, const MatmulInput::Impl& x, float* y, int64_t ldy, int64_t g0,
                int64_t g1, int64_t t0, int64_t t1) {
  const int64_t nb = w.cols / 32;
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* grp = w.group(g);
    const auto* scales = reinterpret_cast<const uint16_t*>(grp + nb * kBlockBytes);
    for (int64_t t = t0; t < t1; ++t) {
      const int8_t* xq = x.qrow(t);
      const float* xd = x.drow(t);
      const int32_t* xc = x.crow(t);
      float acc[kGroupRows] = {};
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = grp + b * kBlockBytes;
        for (int r = 0; r < kGroupRows; ++r) {
          int32_t s = xc[b];
          for (int j = 0; j < 8; ++j)
            for (int i = 0; i < 4; ++i) s += blk[j * 64 + r * 4 + i] * xq[b * 32 + j * 4 + i];
          acc[r] = std::fma(static_cast<float>(s), fp16_to_fp32(scales[b * kGroupRows + r]) * xd[b], acc[r]);
        }
      }
      store_group(acc, y + t * ldy + g * kGroupRows, w.rows - g * kGroupRows);
    }
  }
}

template <PackKind K>
float weight_at(const uint8_t* grp, int64_t k, int r) {
  if constexpr (K == PackKind::kF32) return reinterpret_cast<const float*>(grp)[k * kGroupRows + r];
  if constexpr (K == PackKind::kF16)
    return fp16_to_fp32(reinterpret_cast<const uint16_t*>(grp)[k * kGroupRows + r]);
  if constexpr (K == PackKind::kBF16) {
    const uint32_t lane = reinterpret_cast<const uint32_t*>(grp)[k / 2 * kGroupRows + r];
    return bf16_to_fp32(static_cast<uint16_t>(k % 2 == 0 ? lane & 0xffff : lane >> 16));
  }
  return 0.0f;
}

template <PackKind K>
void float_range(const PackedMatrix::Impl& w, const MatmulInput::Impl& x, float* y, int64_t ldy, int64_t g0,
                 int64_t g1, int64_t t0, int64_t t1) {
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* grp = w.group(g);
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x.x + t * x.ld;
      float acc[kGroupRows] = {};
      for (int64_t k = 0; k < w.cols; ++k)
        for (int r = 0; r < kGroupRows; ++r) acc[r] = std::fma(weight_at<K>(grp, k, r), xr[k], acc[r]);
      store_group(acc, y + t * ldy + g * kGroupRows, w.rows - g * kGroupRows);
    }
  }
}

void quantize(const float* src, int64_t ld, int64_t t0, int64_t t1, MatmulInput::Impl& x) {
  const int64_t nb = x.cols / 32;
  for (int64_t t = t0; t < t1; ++t) {
    auto* q = const_cast<int8_t*>(x.qrow(t));
    auto* d = const_cast<float*>(x.drow(t));
    auto* c = const_cast<int32_t*>(x.crow(t));
    for (int64_t b = 0; b < nb; ++b)
      c[b] = -128 * quantize_block_q8(src + t * ld + b * 32, q + b * 32, &d[b]);
  }
}

}  // namespace

const KernelSet& scalar_kernels() {
  static const KernelSet ks{int8_range,
                            float_range<PackKind::kF32>,
                            float_range<PackKind::kF16>,
                            float_range<PackKind::kBF16>,
                            quantize,
                            1};
  return ks;
}

}  // namespace llmd::engine::cpu
