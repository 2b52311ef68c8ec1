#include "engine/cpu/matmul.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/float16.hpp"
#include "engine/cpu/matmul_internal.hpp"
#include "engine/cpu/quant.hpp"

namespace llmd::engine::cpu {
namespace {

using model::GgmlType;

std::vector<Isa> available_isas() {
  std::vector<Isa> out{Isa::kScalar};
  if (best_supported_isa() >= Isa::kAvx2) out.push_back(Isa::kAvx2);
  if (best_supported_isa() >= Isa::kAvx512) out.push_back(Isa::kAvx512);
  return out;
}

// Floats whose magnitude varies by block, as activations and weights do.
std::vector<float> random_floats(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f), e(-2.0f, 1.0f);
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; i += 32) {
    const float scale = std::pow(10.0f, e(rng));
    for (int64_t j = i; j < std::min(n, i + 32); ++j) v[j] = u(rng) * scale;
  }
  return v;
}

// GGUF bytes of a rows x cols matrix of `type`.
std::vector<uint8_t> make_weights(GgmlType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  const uint64_t row_bytes = model::ggml_row_size(type, cols);
  std::vector<uint8_t> out(rows * row_bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* dst = out.data() + r * row_bytes;
    const std::vector<float> f = random_floats(cols, rng);
    switch (type) {
      case GgmlType::F32:
        std::memcpy(dst, f.data(), cols * 4);
        break;
      case GgmlType::F16:
        for (int64_t k = 0; k < cols; ++k) reinterpret_cast<uint16_t*>(dst)[k] = fp32_to_fp16(f[k]);
        break;
      case GgmlType::BF16:
        for (int64_t k = 0; k < cols; ++k) reinterpret_cast<uint16_t*>(dst)[k] = fp32_to_bf16(f[k]);
        break;
      case GgmlType::Q8_0:
        quantize_row_q8_0(f.data(), reinterpret_cast<BlockQ8_0*>(dst), cols);
        break;
      case GgmlType::Q4_0:
        quantize_row_q4_0(f.data(), reinterpret_cast<BlockQ4_0*>(dst), cols);
        break;
      case GgmlType::Q4_K: {
        auto* b = reinterpret_cast<BlockQ4_K*>(dst);
        for (int64_t i = 0; i < cols / kQkK; ++i) {
          for (auto& s : b[i].scales) s = static_cast<uint8_t>(byte(rng));
          for (auto& q : b[i].qs) q = static_cast<uint8_t>(byte(rng));
          b[i].d = fp32_to_fp16(0.002f * (1 + i % 3));
          b[i].dmin = fp32_to_fp16(0.001f);
        }
        break;
      }
      case GgmlType::Q6_K: {
        auto* b = reinterpret_cast<BlockQ6_K*>(dst);
        for (int64_t i = 0; i < cols / kQkK; ++i) {
          for (auto& q : b[i].ql) q = static_cast<uint8_t>(byte(rng));
          for (auto& q : b[i].qh) q = static_cast<uint8_t>(byte(rng));
          for (auto& s : b[i].scales) s = static_cast<int8_t>(byte(rng) - 128);
          b[i].d = fp32_to_fp16(0.0003f);
        }
        break;
      }
      default:
        ADD_FAILURE() << "no generator for " << model::ggml_type_name(type);
    }
  }
  return out;
}

// The activations an int8 kernel multiplies by: quantized and dequantized again.
std::vector<float> effective_input(const MatmulInput& in, const std::vector<float>& x, int64_t ld,
                                   bool int8) {
  const int64_t T = in.n_tokens(), K = in.cols();
  std::vector<float> out(T * K);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      out[t * K + k] = int8 ? in.impl().qrow(t)[k] * in.impl().drow(t)[k / 32] : x[t * ld + k];
    }
  }
  return out;
}

struct Reference {
  std::vector<double> y, abs;  // y[t * rows + n], and sum |w||x| for the tolerance
};

Reference reference(const std::vector<float>& w, const std::vector<float>& x, int64_t rows, int64_t cols,
                    int64_t T) {
  Reference ref{std::vector<double>(T * rows), std::vector<double>(T * rows)};
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t n = 0; n < rows; ++n) {
      double s = 0, a = 0;
      for (int64_t k = 0; k < cols; ++k) {
        const double p = static_cast<double>(w[n * cols + k]) * x[t * cols + k];
        s += p;
        a += std::fabs(p);
      }
      ref.y[t * rows + n] = s;
      ref.abs[t * rows + n] = a;
    }
  }
  return ref;
}

struct Shape {
  int64_t rows, cols;
};

void check_type(GgmlType type, const std::vector<Shape>& shapes, const std::vector<int64_t>& token_counts) {
  std::mt19937 rng(static_cast<uint32_t>(type) * 7919 + 1);
  ThreadPool pool1(1), pool3(3);
  for (const Shape& s : shapes) {
    const std::vector<uint8_t> raw = make_weights(type, s.rows, s.cols, rng);
    const PackedMatrix w = PackedMatrix::pack(type, raw.data(), s.rows, s.cols, pool3);
    ASSERT_EQ(w.rows(), s.rows);
    ASSERT_EQ(w.cols(), s.cols);
    ASSERT_EQ(w.type(), type);
    const bool int8 = w.wants_int8();
    std::vector<float> wf(s.rows * s.cols);
    unpack_rows(w, wf.data());
    // Exact types pack losslessly: what the kernels see is what ggml dequantizes.
    if (type != GgmlType::Q4_K && type != GgmlType::Q6_K) {
      std::vector<float> row(s.cols);
      for (int64_t r = 0; r < s.rows; ++r) {
        dequantize_row(type, raw.data() + r * model::ggml_row_size(type, s.cols), row.data(), s.cols);
        ASSERT_EQ(std::memcmp(row.data(), wf.data() + r * s.cols, s.cols * 4), 0) << "row " << r;
      }
    }
    for (int64_t T : token_counts) {
      const int64_t ld = s.cols + 5, ldy = s.rows + 3;  // strides wider than the data
      std::vector<float> x = random_floats(T * ld, rng);
      for (int64_t k = 0; k < std::min<int64_t>(32, s.cols); ++k) x[k] = 0.0f;  // quantizes with d = 0
      MatmulInput in;
      in.prepare(x.data(), T, s.cols, ld, int8, pool3);
      const Reference ref = reference(wf, effective_input(in, x, ld, int8), s.rows, s.cols, T);
      for (Isa isa : available_isas()) {
        for (ThreadPool* pool : {&pool1, &pool3}) {
          std::vector<float> y(T * ldy, -12345.0f);
          matmul_isa(w, in, y.data(), ldy, *pool, isa);
          int bad = 0;
          for (int64_t t = 0; t < T && bad < 5; ++t) {
            for (int64_t n = 0; n < s.rows && bad < 5; ++n) {
              const double want = ref.y[t * s.rows + n];
              const double tol = 1e-5 * ref.abs[t * s.rows + n] + 1e-30;
              const float got = y[t * ldy + n];
              if (!(std::fabs(got - want) <= tol)) {
                ++bad;
                ADD_FAILURE() << model::ggml_type_name(type) << " isa=" << isa_name(isa)
                              << " threads=" << pool->size() << " rows=" << s.rows << " cols=" << s.cols
                              << " T=" << T << " t=" << t << " n=" << n << ": got " << got << " want "
                              << want;
              }
            }
            for (int64_t n = s.rows; n < ldy; ++n) ASSERT_EQ(y[t * ldy + n], -12345.0f) << "wrote past a row";
          }
          if (bad) return;
        }
      }
    }
  }
}

const std::vector<int64_t> kTokens = {1, 3, 16, 37, 50};

TEST(Matmul, F32) {
  check_type(GgmlType::F32, {{19, 32}, {45, 64}, {70, 768}, {16, 33}}, kTokens);
}
TEST(Matmul, F16) {
  check_type(GgmlType::F16, {{19, 32}, {45, 64}, {70, 768}, {17, 7}}, kTokens);
}
TEST(Matmul, BF16) {
  check_type(GgmlType::BF16, {{19, 32}, {45, 64}, {70, 768}, {33, 13}}, kTokens);
}
TEST(Matmul, Q8_0) {
  check_type(GgmlType::Q8_0, {{19, 32}, {45, 64}, {70, 768}, {1, 32}}, kTokens);
}
TEST(Matmul, Q4_0) {
  check_type(GgmlType::Q4_0, {{19, 32}, {45, 64}, {70, 768}}, kTokens);
}
TEST(Matmul, Q4_K) {
  check_type(GgmlType::Q4_K, {{19, 256}, {70, 768}}, kTokens);
}
TEST(Matmul, Q6_K) {
  check_type(GgmlType::Q6_K, {{19, 256}, {70, 768}}, kTokens);
}

// Prompt-sized inputs take the GEMM tiles and several token chunks.
TEST(Matmul, PromptSized) {
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16, GgmlType::BF16, GgmlType::F32})
    check_type(type, {{45, 768}}, {515});
}

TEST(Matmul, RequantizedKQuantsStayClose) {
  // Q4_K / Q6_K are requantized to 8 bits per 32 columns: each weight moves by at most about half a
  // step of the new scale (amax / 254).
  std::mt19937 rng(5);
  ThreadPool pool(2);
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K}) {
    const int64_t rows = 21, cols = 512;
    const std::vector<uint8_t> raw = make_weights(type, rows, cols, rng);
    const PackedMatrix w = PackedMatrix::pack(type, raw.data(), rows, cols, pool);
    std::vector<float> packed(rows * cols), orig(cols);
    unpack_rows(w, packed.data());
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(type, raw.data() + r * model::ggml_row_size(type, cols), orig.data(), cols);
      for (int64_t b = 0; b < cols / 32; ++b) {
        float amax = 0;
        for (int k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(orig[b * 32 + k]));
        for (int k = 0; k < 32; ++k)
          ASSERT_LE(std::fabs(packed[r * cols + b * 32 + k] - orig[b * 32 + k]), amax / 254 * 1.01f + 1e-7f)
              << model::ggml_type_name(type) << " row " << r << " col " << b * 32 + k;
      }
    }
  }
}

TEST(Matmul, ActivationQuantizationMatchesAcrossIsas) {
  std::mt19937 rng(11);
  ThreadPool pool(1);
  const int64_t T = 5, K = 96;
  std::vector<float> x = random_floats(T * K, rng);
  for (int k = 0; k < 32; ++k) x[32 + k] = 0.0f;
  x[64] = 0.5f * 127.0f / 127.0f;  // ties in x * 127 / amax land on .5 for some inputs
  MatmulInput ref;
  ref.prepare(x.data(), T, K, K, true, pool);
  const auto& R = ref.impl();
  // The scalar quantizer is ggml's math: spot-check it against quantize_block_q8.
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t b = 0; b < K / 32; ++b) {
      int8_t q[32];
      float d;
      const int32_t sum = quantize_block_q8(x.data() + t * K + b * 32, q, &d);
      ASSERT_EQ(std::memcmp(q, R.qrow(t) + b * 32, 32), 0);
      ASSERT_EQ(d, R.drow(t)[b]);
      ASSERT_EQ(-128 * sum, R.crow(t)[b]);
    }
  }
  for (Isa isa : available_isas()) {
    MatmulInput in;
    in.prepare(x.data(), T, K, K, true, pool);
    auto& I = const_cast<MatmulInput::Impl&>(in.impl());
    std::memset(I.q.data(), 0x55, T * K);
    kernels_for(isa).quantize(x.data(), K, 0, T, I);
    EXPECT_EQ(std::memcmp(I.q.data(), R.q.data(), T * K), 0) << isa_name(isa);
    EXPECT_EQ(std::memcmp(I.d.data(), R.d.data(), T * K / 32 * 4), 0) << isa_name(isa);
    EXPECT_EQ(std::memcmp(I.corr.data(), R.corr.data(), T * K / 32 * 4), 0) << isa_name(isa);
  }
}

TEST(Matmul, QuantizeBlockRoundsLikeGgml) {
  float x[32], d;
  int8_t q[32];
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i + 1);  // amax 32
  quantize_block_q8(x, q, &d);
  EXPECT_EQ(d, fp16_to_fp32(fp32_to_fp16(32.0f / 127.0f)));
  EXPECT_EQ(q[31], 127);
  EXPECT_EQ(q[0], 4);  // 127/32 = 3.97
  x[0] = -64.0f;       // amax 64: x[1] = 2 -> 3.97 -> 4; x[0] -> -127
  quantize_block_q8(x, q, &d);
  EXPECT_EQ(q[0], -127);
  EXPECT_EQ(q[1], 4);
}

TEST(Matmul, PrepareReusesBuffers) {
  ThreadPool pool(2);
  std::vector<float> x(64 * 768, 0.5f);
  MatmulInput in;
  in.prepare(x.data(), 64, 768, 768, true, pool);
  const void* q = in.impl().q.data();
  in.prepare(x.data(), 16, 768, 768, true, pool);
  in.prepare(x.data(), 64, 768, 768, true, pool);
  EXPECT_EQ(in.impl().q.data(), q);
  EXPECT_EQ(in.n_tokens(), 64);
  EXPECT_EQ(in.cols(), 768);
}

TEST(Matmul, RejectsWhatItCannotDo) {
  ThreadPool pool(1);
  std::vector<uint8_t> raw(1024);
  EXPECT_FALSE(matmul_supports(GgmlType::Q5_0));
  EXPECT_TRUE(matmul_supports(GgmlType::Q8_0));
  try {
    PackedMatrix::pack(GgmlType::Q5_0, raw.data(), 2, 32, pool);
    ADD_FAILURE() << "packed Q5_0";
  } catch (const llmd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("Q5_0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(PackedMatrix::pack(GgmlType::Q8_0, raw.data(), 2, 40, pool), llmd::Error);
  // An int8 matrix fed with a float-only input is a caller bug, reported not crashed.
  const PackedMatrix w = PackedMatrix::pack(GgmlType::Q8_0, raw.data(), 2, 32, pool);
  std::vector<float> x(32, 1.0f), y(2);
  MatmulInput in;
  in.prepare(x.data(), 1, 32, 32, false, pool);
  EXPECT_THROW(matmul(w, in, y.data(), 2, pool), llmd::Error);
  in.prepare(x.data(), 1, 32, 32, true, pool);
  EXPECT_NO_THROW(matmul(w, in, y.data(), 2, pool));
}

TEST(Matmul, ReportsIsas) {
  // Not a check: says in the log which ISAs the type tests above covered on this machine.
  std::string names;
  for (Isa isa : available_isas()) names.append(" ").append(isa_name(isa));
  RecordProperty("isas", names);
  std::printf("kernels tested:%s\n", names.c_str());
}

TEST(Matmul, IsaNames) {
  EXPECT_EQ(isa_name(Isa::kScalar), "scalar");
  EXPECT_EQ(isa_name(Isa::kAvx2), "avx2");
  EXPECT_EQ(isa_name(Isa::kAvx512), "avx512");
  EXPECT_LE(detect_isa(), best_supported_isa());
}

}  // namespace
}  // namespace llmd::engine::cpu
