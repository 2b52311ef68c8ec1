#pragma once
// The element-wise parts of a Llama layer. They cost O(tokens x width), next to the matrix
// products' O(tokens x width^2), so they are plain loops; the numerics follow ggml's (RMS sums in
// double, RoPE angles by the same float recurrence) so results track llama.cpp's closely.
#include <cstdint>
#include <span>
#include <vector>

#include "model/llama_config.hpp"

namespace llmd::engine::cpu {

// y = x / sqrt(mean(x^2) + eps) * w, for one row of n floats.
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);

// out[i] = silu(gate[i]) * up[i]
void silu_mul(const float* gate, const float* up, float* out, int64_t n);

// Round to nearest even, as the KV cache stores keys and values.
void f32_to_f16(const float* src, _Float16* dst, int64_t n);

// x[i] = exp(x[i] - shift), vectorised (the sampler's softmax; ~1 ulp); exactly 0 where
// x[i] - shift < -87 (and for -inf), so a filtered-out token never gets weight.
void exp_shifted(float* x, float shift, int64_t n);

// x[i] += y[i]
void add_inplace(float* x, const float* y, int64_t n);

// cos/sin of every (position, rotated pair), computed once for positions [0, max_pos).
class RopeTable {
 public:
  RopeTable() = default;
  RopeTable(const model::LlamaConfig& c, int32_t max_pos, std::span<const float> freq_factors);
  // Rotates n_heads vectors of head_dim floats (stride head_dim) at position pos, in place.
  void apply(float* x, int32_t n_heads, int32_t pos) const;

 private:
  int32_t head_dim_ = 0, n_rot_ = 0;
  model::RopeLayout layout_ = model::RopeLayout::kNormal;
  std::vector<float> cs_;  // [pos][n_rot / 2][cos, sin]
};

}  // namespace llmd::engine::cpu
