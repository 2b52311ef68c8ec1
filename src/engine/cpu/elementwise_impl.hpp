// Element-wise kernels whose cost shows in a profile (SiLU's exp, the f16 conversion of the KV
// written each step, the sampler's softmax), compiled per ISA like attention_impl.hpp. Not a public header.
#include <cmath>
#include <cstdint>

#include "engine/cpu/simd_impl.hpp"

namespace llmd::engine::cpu::LLMD_ISA_NS {

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const v16f g = load16(gate + i);
    const v16f r = g / (1.0f + vexp(-g)) * load16(up + i);
    std::memcpy(out + i, &r, sizeof r);
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// Below -87 vexp clamps; those (and -inf) become exactly 0, so a filtered-out token has no weight.
void exp_shifted(float* x, float shift, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const v16f a = load16(x + i) - shift;
    const v16f r = a < -87.0f ? v16f{} : vexp(a);
    std::memcpy(x + i, &r, sizeof r);
  }
  for (; i < n; ++i) {
    float a = x[i] - shift;
    const bool zero = a < -87.0f;
    exp_inplace(&a, 1);
    x[i] = zero ? 0.0f : a;
  }
}

void f32_to_f16(const float* src, _Float16* dst, int64_t n) {
  to_half(src, dst, static_cast<int>(n));
}

}  // namespace llmd::engine::cpu::LLMD_ISA_NS
