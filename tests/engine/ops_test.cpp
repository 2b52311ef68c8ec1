// The element-wise parts of a layer against their definitions.
#include "engine/cpu/ops.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace llmd::engine::cpu {
namespace {

model::LlamaConfig rope_config(model::RopeLayout layout, int64_t head_dim, int64_t n_rot) {
  model::LlamaConfig c;
  c.head_dim = head_dim;
  c.n_rot = n_rot;
  c.rope_base = 10000.0f;
  c.rope_layout = layout;
  return c;
}

// x rotated by RoPE at `pos`, computed in double from the definition.
std::vector<double> rope_reference(const std::vector<float>& x, const model::LlamaConfig& c, int pos,
                                   const std::vector<float>& ff) {
  std::vector<double> y(x.begin(), x.end());
  const int half = static_cast<int>(c.n_rot / 2);
  for (int i = 0; i < half; ++i) {
    const double theta =
        pos * std::pow(static_cast<double>(c.rope_base), -2.0 * i / c.n_rot) / (ff.empty() ? 1.0 : ff[i]);
    const int a = c.rope_layout == model::RopeLayout::kNormal ? 2 * i : i;
    const int b = c.rope_layout == model::RopeLayout::kNormal ? 2 * i + 1 : i + half;
    y[a] = x[a] * std::cos(theta) - x[b] * std::sin(theta);
    y[b] = x[a] * std::sin(theta) + x[b] * std::cos(theta);
  }
  return y;
}

TEST(Ops, RopeRotatesPairsOfEachLayout) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (auto layout : {model::RopeLayout::kNormal, model::RopeLayout::kNeox}) {
    for (int64_t n_rot : {64, 32}) {  // 32: partial rotation leaves the tail of the head alone
      const auto c = rope_config(layout, 64, n_rot);
      std::vector<float> ff;
      for (bool scaled : {false, true}) {
        if (scaled) {  // Llama 3.1's rope_freqs.weight: per-pair divisors of the frequency
          ff.resize(n_rot / 2);
          for (size_t i = 0; i < ff.size(); ++i) ff[i] = 1.0f + static_cast<float>(i % 5);
        }
        const RopeTable table(c, 300, ff);
        for (int pos : {0, 1, 17, 299}) {
          std::vector<float> x(64);
          for (auto& v : x) v = nd(rng);
          const auto want = rope_reference(x, c, pos, ff);
          table.apply(x.data(), 1, pos);
          for (int d = 0; d < 64; ++d) ASSERT_NEAR(x[d], want[d], 2e-4) << "pos " << pos << " dim " << d;
        }
      }
    }
  }
}

TEST(Ops, RmsNormAndSiluMulFollowTheirDefinitions) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  const int n = 77;  // not a multiple of the vector width: the tails are covered too
  std::vector<float> x(n), w(n), y(n), up(n), out(n);
  for (int i = 0; i < n; ++i) x[i] = nd(rng), w[i] = nd(rng), up[i] = nd(rng);
  x[3] = 95.0f, x[4] = -95.0f;  // exp's clamped range
  rms_norm(x.data(), w.data(), y.data(), n, 1e-5f);
  double ss = 0;
  for (float v : x) ss += static_cast<double>(v) * v;
  const double scale = 1.0 / std::sqrt(ss / n + 1e-5);
  for (int i = 0; i < n; ++i)
    EXPECT_NEAR(y[i], x[i] * scale * w[i], 1e-5 * std::abs(x[i] * scale * w[i]) + 1e-6);
  silu_mul(x.data(), up.data(), out.data(), n);
  for (int i = 0; i < n; ++i) {
    const double want = x[i] / (1.0 + std::exp(-static_cast<double>(x[i]))) * up[i];
    EXPECT_NEAR(out[i], want, 1e-5 * std::abs(want) + 1e-6) << i;
  }
}

}  // namespace
}  // namespace llmd::engine::cpu
