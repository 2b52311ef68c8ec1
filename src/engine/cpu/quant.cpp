#include "engine/cpu/quant.hpp"

#include <algorithm>
#include <cmath>

#include "common/float16.hpp"

namespace llmd::engine::cpu {

int32_t quantize_block_q8(const float* x, int8_t* q, float* d) {
  float amax = 0.0f;
  for (int j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(x[j]));
  *d = fp16_to_fp32(fp32_to_fp16(amax / 127.0f));
  // 127/amax rather than 1/d: ggml's AVX path does so, and the last bit decides some roundings.
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  int32_t sum = 0;
  for (int j = 0; j < kQ8Block; ++j) {
    q[j] = static_cast<int8_t>(std::nearbyint(x[j] * id));  // default rounding: half to even
    sum += q[j];
  }
  return sum;
}

}  // namespace llmd::engine::cpu
