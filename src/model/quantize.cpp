#include "model/quantize.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.hpp"
#include "common/float16.hpp"

namespace llmd::model {

// The quantizers follow ggml-quants.c's *_ref functions statement by statement: the same float
// operations in the same order (amax, d = amax / 127, id = 1/d, roundf(x * id)), because a rewrite
// that is "mathematically equal" (x / d instead of x * id) rounds differently on some inputs.

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < 32; ++j) y[i].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
}

void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n) {
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    // The scale keeps the sign of the largest-magnitude element so that it maps to -8 exactly.
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < 16; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[16 + j] * id;
      const auto q0 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 8.5f))));
      const auto q1 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 8.5f))));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quantize_row_f16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

void quantize_row_bf16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_bf16(x[i]);
}

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / 32; ++i, y += 32) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < 32; ++j) y[j] = x[i].qs[j] * d;
  }
}

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / 32; ++i, y += 32) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = ((x[i].qs[j] & 0x0f) - 8) * d;
      y[j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

namespace {
// Scale and min j (0..7) of a Q4_K super-block: 6 bits each, the top two bits of 4..7 stored in the
// spare top bits of bytes 0..7.
void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = static_cast<uint8_t>((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}
}  // namespace

void dequantize_row_q4_k(const BlockQ4_K* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / 256; ++i) {
    const uint8_t* q = x[i].qs;
    const float d = fp16_to_fp32(x[i].d);
    const float min = fp16_to_fp32(x[i].dmin);
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
      uint8_t sc, m;
      scale_min_k4(is, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = min * m;
      scale_min_k4(is + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xf) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

void dequantize_row_q6_k(const BlockQ6_K* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / 256; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        // ggml multiplies left to right: (d * scale) * q, in float.
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

void dequantize_row_f16(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}

void dequantize_row_bf16(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(x[i]);
}

bool can_quantize(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
      return true;
    default:
      return false;
  }
}

bool can_dequantize(GgmlType type) {
  return can_quantize(type) || type == GgmlType::Q4_K || type == GgmlType::Q6_K;
}

namespace {
void check_sizes(const char* what, GgmlType type, size_t n, size_t bytes) {
  const auto& t = ggml_type_traits(type);
  if (n % t.block_size != 0)
    fail("{}: {} floats is not a multiple of the {} block size {}", what, n, t.name, t.block_size);
  if (bytes != ggml_row_size(type, n))
    fail("{}: {} floats of {} take {} bytes, buffer has {}", what, n, t.name, ggml_row_size(type, n), bytes);
}
}  // namespace

// The casts below view ggml's packed byte layout through the block structs, which have alignment 2;
// memcpy-based access would cost a copy per block for no gain on the platforms we build for.
void quantize(GgmlType type, std::span<const float> x, std::span<uint8_t> out) {
  if (!can_quantize(type)) fail("quantize: cannot convert to {}", ggml_type_name(type));
  check_sizes("quantize", type, x.size(), out.size());
  const auto n = static_cast<int64_t>(x.size());
  switch (type) {
    case GgmlType::F32:
      std::memcpy(out.data(), x.data(), out.size());
      break;
    case GgmlType::F16:
      quantize_row_f16(x.data(), reinterpret_cast<uint16_t*>(out.data()), n);
      break;
    case GgmlType::BF16:
      quantize_row_bf16(x.data(), reinterpret_cast<uint16_t*>(out.data()), n);
      break;
    case GgmlType::Q8_0:
      quantize_row_q8_0(x.data(), reinterpret_cast<BlockQ8_0*>(out.data()), n);
      break;
    case GgmlType::Q4_0:
      quantize_row_q4_0(x.data(), reinterpret_cast<BlockQ4_0*>(out.data()), n);
      break;
    default:
      break;
  }
}

void dequantize(GgmlType type, std::span<const uint8_t> data, std::span<float> y) {
  if (!can_dequantize(type)) fail("dequantize: cannot convert from {}", ggml_type_name(type));
  check_sizes("dequantize", type, y.size(), data.size());
  const auto n = static_cast<int64_t>(y.size());
  const uint8_t* p = data.data();
  switch (type) {
    case GgmlType::F32:
      std::memcpy(y.data(), p, data.size());
      break;
    case GgmlType::F16:
      dequantize_row_f16(reinterpret_cast<const uint16_t*>(p), y.data(), n);
      break;
    case GgmlType::BF16:
      dequantize_row_bf16(reinterpret_cast<const uint16_t*>(p), y.data(), n);
      break;
    case GgmlType::Q8_0:
      dequantize_row_q8_0(reinterpret_cast<const BlockQ8_0*>(p), y.data(), n);
      break;
    case GgmlType::Q4_0:
      dequantize_row_q4_0(reinterpret_cast<const BlockQ4_0*>(p), y.data(), n);
      break;
    case GgmlType::Q4_K:
      dequantize_row_q4_k(reinterpret_cast<const BlockQ4_K*>(p), y.data(), n);
      break;
    case GgmlType::Q6_K:
      dequantize_row_q6_k(reinterpret_cast<const BlockQ6_K*>(p), y.data(), n);
      break;
    default:
      break;
  }
}

}  // namespace llmd::model
