#include "engine/cpu/ops.hpp"

#include <cmath>

#include "engine/cpu/matmul.hpp"

namespace llmd::engine::cpu {

#define LLMD_DECLARE_ISA(ns)                                                \
  namespace ns {                                                            \
  void silu_mul(const float* gate, const float* up, float* out, int64_t n); \
  void f32_to_f16(const float* src, _Float16* dst, int64_t n);              \
  void exp_shifted(float* x, float shift, int64_t n);                       \
  }
LLMD_DECLARE_ISA(scalar)
LLMD_DECLARE_ISA(avx2)
LLMD_DECLARE_ISA(avx512)
#undef LLMD_DECLARE_ISA

namespace {
struct ElementwiseKernels {
  decltype(&scalar::silu_mul) silu_mul;
  decltype(&scalar::f32_to_f16) f32_to_f16;
  decltype(&scalar::exp_shifted) exp_shifted;
};

const ElementwiseKernels& kernels() {
  static const ElementwiseKernels k = [] {
    switch (detect_isa()) {
      case Isa::kAvx512:
        return ElementwiseKernels{&avx512::silu_mul, &avx512::f32_to_f16, &avx512::exp_shifted};
      case Isa::kAvx2:
        return ElementwiseKernels{&avx2::silu_mul, &avx2::f32_to_f16, &avx2::exp_shifted};
      default:
        return ElementwiseKernels{&scalar::silu_mul, &scalar::f32_to_f16, &scalar::exp_shifted};
    }
  }();
  return k;
}
}  // namespace

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / static_cast<double>(n)) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  kernels().silu_mul(gate, up, out, n);
}

void f32_to_f16(const float* src, _Float16* dst, int64_t n) {
  kernels().f32_to_f16(src, dst, n);
}

void exp_shifted(float* x, float shift, int64_t n) {
  kernels().exp_shifted(x, shift, n);
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

RopeTable::RopeTable(const model::LlamaConfig& c, int32_t max_pos, std::span<const float> freq_factors)
    : head_dim_(static_cast<int32_t>(c.head_dim)),
      n_rot_(static_cast<int32_t>(c.n_rot)),
      layout_(c.rope_layout) {
  const int32_t half = n_rot_ / 2;
  cs_.resize(static_cast<size_t>(max_pos) * half * 2);
  // The same float recurrence as ggml's rope cache (theta *= theta_scale), not pow per pair,
  // so angles match llama.cpp's bit for bit.
  const float theta_scale = std::pow(c.rope_base, -2.0f / static_cast<float>(n_rot_));
  for (int32_t p = 0; p < max_pos; ++p) {
    float theta = static_cast<float>(p);
    float* row = cs_.data() + static_cast<size_t>(p) * half * 2;
    for (int32_t i = 0; i < half; ++i) {
      const float ff = freq_factors.empty() ? 1.0f : freq_factors[i];
      const float t = c.rope_scale * (theta / ff);
      row[2 * i] = std::cos(t);
      row[2 * i + 1] = std::sin(t);
      theta *= theta_scale;
    }
  }
}

void RopeTable::apply(float* x, int32_t n_heads, int32_t pos) const {
  const int32_t half = n_rot_ / 2;
  const float* row = cs_.data() + static_cast<size_t>(pos) * half * 2;
  for (int32_t h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim_;
    for (int32_t i = 0; i < half; ++i) {
      const float c = row[2 * i], s = row[2 * i + 1];
      // Normal layout rotates neighbours (2i, 2i+1); NeoX rotates (i, i + n_rot/2).
      const int32_t a = layout_ == model::RopeLayout::kNormal ? 2 * i : i;
      const int32_t b = layout_ == model::RopeLayout::kNormal ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * c - x1 * s;
      v[b] = x0 * s + x1 * c;
    }
  }
}

}  // namespace llmd::engine::cpu
