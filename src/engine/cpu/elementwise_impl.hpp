// Element-wise kernels whose cost shows in a profile (SiLU's exp, the f16 conversion of the KV
// written each step), compiled per ISA like attention_impl.hpp. Not a public header.
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

void f32_to_f16(const float* src, _Float16* dst, int64_t n) {
  to_half(src, dst, static_cast<int>(n));
}

}  // namespace llmd::engine::cpu::LLMD_ISA_NS
