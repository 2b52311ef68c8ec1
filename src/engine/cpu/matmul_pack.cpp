// Packing GGUF weights into the kernels' layouts (see matmul_internal.hpp), and reading them back.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/error.hpp"
#include "common/float16.hpp"
#include "engine/cpu/matmul_internal.hpp"
#include "engine/cpu/quant.hpp"

namespace llmd::engine::cpu {
namespace {

using model::GgmlType;

int64_t round_up(int64_t v, int64_t m) {
  return (v + m - 1) / m * m;
}

// One row of int8 quants and their fp16 block scales, whatever the source type.
// Q8_0 and Q4_0 convert exactly. Q4_K and Q6_K are dequantized and requantized to 8 bits per
// 32 columns (scale amax/127): the kernels then run the one int8 path, at the cost of an extra
// rounding of at most half a step (amax/254) per weight, small next to the 4/6-bit error itself.
void row_to_int8(GgmlType type, const uint8_t* src, int64_t cols, int8_t* q, uint16_t* d, float* scratch) {
  const int64_t nb = cols / 32;
  switch (type) {
    case GgmlType::Q8_0: {
      const auto* b = reinterpret_cast<const BlockQ8_0*>(src);
      for (int64_t i = 0; i < nb; ++i) {
        d[i] = b[i].d;
        std::memcpy(q + i * 32, b[i].qs, 32);
      }
      return;
    }
    case GgmlType::Q4_0: {
      const auto* b = reinterpret_cast<const BlockQ4_0*>(src);
      for (int64_t i = 0; i < nb; ++i) {
        d[i] = b[i].d;
        for (int j = 0; j < 16; ++j) {
          q[i * 32 + j] = static_cast<int8_t>((b[i].qs[j] & 0xF) - 8);
          q[i * 32 + j + 16] = static_cast<int8_t>((b[i].qs[j] >> 4) - 8);
        }
      }
      return;
    }
    default: {
      dequantize_row(type, src, scratch, cols);
      for (int64_t i = 0; i < nb; ++i) {
        const float* x = scratch + i * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
        d[i] = fp32_to_fp16(amax / 127.0f);
        // Divide by the scale the kernels will use (the fp16 one), so rounding errors do not add up.
        const float ds = fp16_to_fp32(d[i]);
        const float id = ds != 0.0f ? 1.0f / ds : 0.0f;
        for (int j = 0; j < 32; ++j)
          q[i * 32 + j] = static_cast<int8_t>(std::clamp(std::nearbyint(x[j] * id), -127.0f, 127.0f));
      }
      return;
    }
  }
}

PackKind kind_of(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
      return PackKind::kF32;
    case GgmlType::F16:
      return PackKind::kF16;
    case GgmlType::BF16:
      return PackKind::kBF16;
    default:
      return PackKind::kInt8;
  }
}

void pack_int8_group(const PackedMatrix::Impl& m, const uint8_t* src, int64_t g, std::vector<int8_t>& q,
                     std::vector<uint16_t>& d, std::vector<float>& scratch) {
  const int64_t nb = m.cols / 32;
  const uint64_t row_bytes = model::ggml_row_size(m.type, m.cols);
  auto* dst = const_cast<uint8_t*>(m.group(g));
  auto* scales = reinterpret_cast<uint16_t*>(dst + nb * kBlockBytes);
  for (int r = 0; r < kGroupRows; ++r) {
    const int64_t row = g * kGroupRows + r;
    if (row < m.rows) {
      row_to_int8(m.type, src + row * row_bytes, m.cols, q.data(), d.data(), scratch.data());
    } else {  // padding rows compute zeros
      std::fill(q.begin(), q.end(), 0);
      std::fill(d.begin(), d.end(), 0);
    }
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* blk = dst + b * kBlockBytes;
      for (int j = 0; j < 8; ++j)
        for (int i = 0; i < 4; ++i)
          blk[j * 64 + r * 4 + i] = static_cast<uint8_t>(q[b * 32 + j * 4 + i] + 128);
      scales[b * kGroupRows + r] = d[b];
    }
  }
}

void pack_float_group(const PackedMatrix::Impl& m, const uint8_t* src, int64_t g) {
  auto* dst = const_cast<uint8_t*>(m.group(g));
  std::memset(dst, 0, m.group_bytes);
  const int64_t cols = m.cols;
  for (int r = 0; r < kGroupRows; ++r) {
    const int64_t row = g * kGroupRows + r;
    if (row >= m.rows) break;
    switch (m.kind) {
      case PackKind::kF32: {
        const auto* s = reinterpret_cast<const float*>(src) + row * cols;
        auto* o = reinterpret_cast<float*>(dst);
        for (int64_t k = 0; k < cols; ++k) o[k * kGroupRows + r] = s[k];
        break;
      }
      case PackKind::kF16: {
        const auto* s = reinterpret_cast<const uint16_t*>(src) + row * cols;
        auto* o = reinterpret_cast<uint16_t*>(dst);
        for (int64_t k = 0; k < cols; ++k) o[k * kGroupRows + r] = s[k];
        break;
      }
      case PackKind::kBF16: {
        const auto* s = reinterpret_cast<const uint16_t*>(src) + row * cols;
        auto* o = reinterpret_cast<uint32_t*>(dst);
        for (int64_t k = 0; k < cols; k += 2) {
          const uint32_t odd = k + 1 < cols ? s[k + 1] : 0;
          o[k / 2 * kGroupRows + r] = s[k] | (odd << 16);
        }
        break;
      }
      case PackKind::kInt8:
        break;
    }
  }
}

}  // namespace

bool matmul_supports(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q4_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

PackedMatrix::PackedMatrix() : impl_(std::make_unique<Impl>()) {}
PackedMatrix::PackedMatrix(PackedMatrix&&) noexcept = default;
PackedMatrix& PackedMatrix::operator=(PackedMatrix&&) noexcept = default;
PackedMatrix::~PackedMatrix() = default;

int64_t PackedMatrix::rows() const {
  return impl_->rows;
}
int64_t PackedMatrix::cols() const {
  return impl_->cols;
}
model::GgmlType PackedMatrix::type() const {
  return impl_->type;
}
bool PackedMatrix::wants_int8() const {
  return impl_->kind == PackKind::kInt8;
}
size_t PackedMatrix::bytes() const {
  return impl_->buf.capacity();
}

PackedMatrix PackedMatrix::pack(GgmlType type, const void* data, int64_t rows, int64_t cols,
                                ThreadPool& pool) {
  if (!matmul_supports(type))
    fail("matmul: weights of type {} are not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)",
         model::ggml_type_name(type));
  const auto& traits = model::ggml_type_traits(type);
  if (rows < 0 || cols <= 0 || cols % traits.block_size != 0)
    fail("matmul: {} x {} matrix of {} (columns must be a positive multiple of {})", rows, cols, traits.name,
         traits.block_size);
  PackedMatrix out;
  Impl& m = *out.impl_;
  m.type = type;
  m.kind = kind_of(type);
  m.rows = rows;
  m.cols = cols;
  m.groups = (rows + kGroupRows - 1) / kGroupRows;
  switch (m.kind) {
    case PackKind::kInt8: {
      const int64_t nb = cols / 32;
      m.group_bytes = round_up(nb * kBlockBytes + nb * kGroupRows * 2, 64);
      break;
    }
    case PackKind::kF32:
      m.group_bytes = round_up(cols * kGroupRows * 4, 64);
      break;
    case PackKind::kF16:
      m.group_bytes = round_up(cols * kGroupRows * 2, 64);
      break;
    case PackKind::kBF16:
      m.group_bytes = round_up((cols + 1) / 2 * kGroupRows * 4, 64);
      break;
  }
  m.buf.grow(std::max<int64_t>(1, m.groups * m.group_bytes));
  const auto* src = static_cast<const uint8_t*>(data);
  const int64_t per_task = 8;
  pool.parallel_for((m.groups + per_task - 1) / per_task, [&](int64_t task, int) {
    std::vector<int8_t> q;
    std::vector<uint16_t> d;
    std::vector<float> scratch;
    if (m.kind == PackKind::kInt8) {
      q.resize(cols);
      d.resize(cols / 32);
      scratch.resize(cols);
    }
    for (int64_t g = task * per_task; g < std::min(m.groups, (task + 1) * per_task); ++g) {
      if (m.kind == PackKind::kInt8)
        pack_int8_group(m, src, g, q, d, scratch);
      else
        pack_float_group(m, src, g);
    }
  });
  return out;
}

void unpack_rows(const PackedMatrix& w, float* dst) {
  const PackedMatrix::Impl& m = w.impl();
  const int64_t cols = m.cols, nb = cols / 32;
  for (int64_t row = 0; row < m.rows; ++row) {
    const uint8_t* grp = m.group(row / kGroupRows);
    const int r = static_cast<int>(row % kGroupRows);
    float* o = dst + row * cols;
    switch (m.kind) {
      case PackKind::kInt8: {
        const auto* scales = reinterpret_cast<const uint16_t*>(grp + nb * kBlockBytes);
        for (int64_t b = 0; b < nb; ++b) {
          const float d = fp16_to_fp32(scales[b * kGroupRows + r]);
          for (int k = 0; k < 32; ++k)
            o[b * 32 + k] = (grp[b * kBlockBytes + (k / 4) * 64 + r * 4 + k % 4] - 128) * d;
        }
        break;
      }
      case PackKind::kF32:
        for (int64_t k = 0; k < cols; ++k) o[k] = reinterpret_cast<const float*>(grp)[k * kGroupRows + r];
        break;
      case PackKind::kF16:
        for (int64_t k = 0; k < cols; ++k)
          o[k] = fp16_to_fp32(reinterpret_cast<const uint16_t*>(grp)[k * kGroupRows + r]);
        break;
      case PackKind::kBF16:
        for (int64_t k = 0; k < cols; ++k) {
          const uint32_t lane = reinterpret_cast<const uint32_t*>(grp)[k / 2 * kGroupRows + r];
          o[k] = bf16_to_fp32(static_cast<uint16_t>(k % 2 == 0 ? lane & 0xffff : lane >> 16));
        }
        break;
    }
  }
}

}  // namespace llmd::engine::cpu
