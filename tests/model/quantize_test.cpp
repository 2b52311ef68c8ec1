#include "model/quantize.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "common/error.hpp"
#include "common/float16.hpp"

namespace llmd::model {
namespace {

// The golden hashes below were produced by ggml's own code (quantize_row_*_ref and dequantize_row_*
// from ggml-quants.c, built from source) on exactly these inputs; matching them means the files we
// write are byte-identical to llama.cpp's and our dequantized rows equal ggml's.
struct Lcg {
  uint64_t s;
  uint64_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return s >> 33;
  }
};

// Floats of many magnitudes, every one exactly representable (a 24-bit integer over a power of two),
// with x.5 ties sprinkled in to exercise roundf.
std::vector<float> test_floats(size_t n, uint64_t seed) {
  Lcg g{seed};
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t r = static_cast<int64_t>(g.next() & 0xffffff) - 0x800000;
    const int e = static_cast<int>(g.next() % 8);
    x[i] = static_cast<float>(r) / static_cast<float>(1 << (20 + e));
  }
  for (size_t i = 0; i < n; i += 97) x[i] = static_cast<float>(static_cast<int>(i % 33) - 16) * 0.5f;
  return x;
}

std::vector<uint8_t> test_bytes(size_t n, uint64_t seed) {
  Lcg g{seed};
  std::vector<uint8_t> b(n);
  for (auto& c : b) c = static_cast<uint8_t>(g.next() & 0xff);
  return b;
}

uint64_t fnv(const void* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  const auto* c = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 0x100000001b3ull;
  return h;
}

constexpr size_t kN = 4096;

TEST(Quantize, Q8_0MatchesGgmlReferenceBytes) {
  const auto x = test_floats(kN, 1);
  std::vector<uint8_t> q(ggml_row_size(GgmlType::Q8_0, kN));
  quantize(GgmlType::Q8_0, x, q);
  EXPECT_EQ(fnv(q.data(), q.size()), 0x017330665ec6f1c7ull);
  std::vector<float> y(kN);
  dequantize(GgmlType::Q8_0, q, y);
  EXPECT_EQ(fnv(y.data(), y.size() * 4), 0xd4a4cbede17bc042ull);
}

TEST(Quantize, Q4_0MatchesGgmlReferenceBytes) {
  const auto x = test_floats(kN, 1);
  std::vector<uint8_t> q(ggml_row_size(GgmlType::Q4_0, kN));
  quantize(GgmlType::Q4_0, x, q);
  EXPECT_EQ(fnv(q.data(), q.size()), 0xe4e34e7f7b8150d5ull);
  std::vector<float> y(kN);
  dequantize(GgmlType::Q4_0, q, y);
  EXPECT_EQ(fnv(y.data(), y.size() * 4), 0xfbf62198d421e076ull);
}

TEST(Quantize, Q4_KDequantizeMatchesGgml) {
  // Random bit patterns cover every scale/min/nibble combination; the fp16 scales are kept finite.
  auto b = test_bytes(16 * sizeof(BlockQ4_K), 2);
  for (size_t i = 0; i < 16; ++i) {
    b[i * 144 + 1] &= 0x3b;
    b[i * 144 + 3] &= 0x3b;
  }
  std::vector<float> y(16 * 256);
  dequantize(GgmlType::Q4_K, b, y);
  EXPECT_EQ(fnv(y.data(), y.size() * 4), 0xeca9d806fe05203bull);
  EXPECT_EQ(y[0], 0x1.d6a78p+1f);
  EXPECT_EQ(y[300], -0x1.59p-14f);
}

TEST(Quantize, Q6_KDequantizeMatchesGgml) {
  auto b = test_bytes(16 * sizeof(BlockQ6_K), 3);
  for (size_t i = 0; i < 16; ++i) b[i * 210 + 209] &= 0x3b;
  std::vector<float> y(16 * 256);
  dequantize(GgmlType::Q6_K, b, y);
  EXPECT_EQ(fnv(y.data(), y.size() * 4), 0x9aefd586629680abull);
  EXPECT_EQ(y[0], -0x1.28116p+6f);
  EXPECT_EQ(y[300], -0x1.1fb8p+6f);
}

TEST(Quantize, Q8_0KnownBlock) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16) * 0.25f;  // amax 4 at j = 0
  BlockQ8_0 b{};
  quantize_row_q8_0(x.data(), &b, 32);
  EXPECT_EQ(b.d, fp32_to_fp16(4.0f / 127));
  EXPECT_EQ(b.qs[0], -127);
  EXPECT_EQ(b.qs[16], 0);
  EXPECT_EQ(b.qs[31], 119);  // round(3.75 * 127 / 4) = round(119.06)
  std::vector<float> y(32);
  dequantize_row_q8_0(&b, y.data(), 32);
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < 32; ++j) EXPECT_NEAR(y[j], x[j], d / 2 + 1e-3f) << j;
}

TEST(Quantize, Q4_0KnownBlockMapsLargestToMinusEight) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j % 16) - 7.0f;  // -7..8: the largest, 8, maps to -8
  BlockQ4_0 b{};
  quantize_row_q4_0(x.data(), &b, 32);
  EXPECT_EQ(fp16_to_fp32(b.d), -1.0f);
  for (int j = 0; j < 16; ++j) {
    // q = (int)(x / -1 + 8.5) clamped to 15: x = 8 -> 0, x = -7 -> 15.
    const int want = std::min(15, static_cast<int>(-x[j] + 8.5f));
    EXPECT_EQ(b.qs[j] & 0xf, want) << j;
    EXPECT_EQ(b.qs[j] >> 4, want) << j;
  }
  std::vector<float> y(32);
  dequantize_row_q4_0(&b, y.data(), 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], x[j]) << j;
}

TEST(Quantize, ZeroBlocksHaveZeroScale) {
  std::vector<float> x(64, 0.0f);
  BlockQ8_0 a[2];
  BlockQ4_0 b[2];
  quantize_row_q8_0(x.data(), a, 64);
  quantize_row_q4_0(x.data(), b, 64);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(a[i].d, 0);
    EXPECT_EQ(b[i].d, 0x8000);  // ggml's d = max / -8 is -0.0 here: byte-identical files need it too
    for (int j = 0; j < 32; ++j) EXPECT_EQ(a[i].qs[j], 0);
    for (int j = 0; j < 16; ++j) EXPECT_EQ(b[i].qs[j], 0x88);  // 0 maps to 8 in both nibbles
  }
}

TEST(Quantize, RoundTripErrorIsBoundedByTheScale) {
  const auto x = test_floats(1024, 7);
  std::vector<float> y(1024);
  for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0}) {
    std::vector<uint8_t> q(ggml_row_size(t, x.size()));
    quantize(t, x, q);
    dequantize(t, q, y);
    for (size_t blk = 0; blk < x.size() / 32; ++blk) {
      uint16_t dbits;
      std::memcpy(&dbits, q.data() + blk * ggml_type_traits(t).type_size, 2);
      const float d = std::fabs(fp16_to_fp32(dbits));
      for (size_t j = blk * 32; j < blk * 32 + 32; ++j)
        ASSERT_LE(std::fabs(y[j] - x[j]), d * 1.01f + 1e-6f) << ggml_type_name(t) << " at " << j;
    }
  }
}

TEST(Quantize, HalfFormatsRoundToNearestEven) {
  const std::vector<float> x = {1.0f, -2.0f, 0.0f, 65504.0f, 1e-8f, 1.0f + 0x1p-11f, 1.0f + 0x1p-8f};
  std::vector<uint8_t> h(x.size() * 2), b(x.size() * 2);
  quantize(GgmlType::F16, x, h);
  quantize(GgmlType::BF16, x, b);
  auto u16 = [](const std::vector<uint8_t>& v, size_t i) {
    uint16_t r;
    std::memcpy(&r, v.data() + 2 * i, 2);
    return r;
  };
  EXPECT_EQ(u16(h, 0), 0x3c00);
  EXPECT_EQ(u16(h, 1), 0xc000);
  EXPECT_EQ(u16(h, 3), 0x7bff);
  EXPECT_EQ(u16(h, 4), 0x0000);  // below half the smallest subnormal
  EXPECT_EQ(u16(h, 5), 0x3c00);  // a tie rounds to even
  EXPECT_EQ(u16(b, 0), 0x3f80);
  EXPECT_EQ(u16(b, 6), 0x3f80);  // 1 + 2^-8 is a bf16 tie: rounds to even
  std::vector<float> y(x.size());
  dequantize(GgmlType::F16, h, y);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[3], 65504.0f);
  dequantize(GgmlType::BF16, b, y);
  EXPECT_EQ(y[1], -2.0f);
}

TEST(Quantize, F32IsACopy) {
  const auto x = test_floats(64, 9);
  std::vector<uint8_t> q(x.size() * 4);
  quantize(GgmlType::F32, x, q);
  std::vector<float> y(x.size());
  dequantize(GgmlType::F32, q, y);
  EXPECT_EQ(y, x);
}

TEST(Quantize, RejectsUnsupportedTypesAndBadSizes) {
  std::vector<float> x(256);
  std::vector<uint8_t> q(1024);
  EXPECT_THROW(quantize(GgmlType::Q4_K, x, {q.data(), 144}), Error);
  EXPECT_THROW(dequantize(GgmlType::IQ2_XS, {q.data(), 74}, x), Error);
  EXPECT_THROW(quantize(GgmlType::Q8_0, {x.data(), 33}, q), Error);   // not whole blocks
  EXPECT_THROW(quantize(GgmlType::Q8_0, x, {q.data(), 271}), Error);  // wrong output size
  EXPECT_THROW(dequantize(GgmlType::Q6_K, {q.data(), 209}, {x.data(), 256}), Error);
  EXPECT_TRUE(can_quantize(GgmlType::BF16));
  EXPECT_FALSE(can_quantize(GgmlType::Q6_K));
  EXPECT_TRUE(can_dequantize(GgmlType::Q6_K));
}

}  // namespace
}  // namespace llmd::model
