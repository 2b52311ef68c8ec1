#pragma once
// What the portable matmul driver shares with the per-ISA kernel files: the packed layouts and the
// kernel entry points. Not a public interface; tests use it to force an ISA and to read packed
// weights back.
//
// Packed weights come in groups of kGroupRows = 16 rows (the last group padded with zero rows), one
// group's bytes contiguous so a kernel streams it front to back.
//
//  * Int8 (Q8_0, Q4_0, and Q4_K/Q6_K requantized): per group, nb = cols/32 blocks of 512 bytes of
//    quants, then nb x 16 fp16 row scales. In block b, byte j*64 + r*4 + i is the quant of row r,
//    column 32b + 4j + i, stored as q + 128 (unsigned): one 64-byte load is 16 rows x 4 columns,
//    the unsigned operand of vpdpbusd, whose signed operand is a broadcast of 4 activation bytes.
//    The +128 is undone by starting each block's int32 sum at -128 * sum(activation quants).
//  * F32 / F16: per group, column-major: 16 values (one per row) per column.
//  * BF16: per group, column pairs: 32-bit lane r holds row r's (even | odd << 16) columns, so the
//    even column is lane << 16 and the odd one lane & 0xffff0000 (one op each).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "engine/cpu/matmul.hpp"

namespace llmd::engine::cpu {

inline constexpr int kGroupRows = 16;
inline constexpr int kBlockBytes = 32 * kGroupRows;  // quant bytes of one 32-column block of a group

enum class PackKind { kInt8, kF32, kF16, kBF16 };

// 64-byte aligned storage that only grows.
class AlignedBuffer {
 public:
  void* data() const { return ptr_.get(); }
  size_t capacity() const { return cap_; }
  void grow(size_t bytes);  // keeps nothing: contents are undefined after a grow

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> ptr_;
  size_t cap_ = 0;
};

struct PackedMatrix::Impl {
  model::GgmlType type = model::GgmlType::F32;
  PackKind kind = PackKind::kF32;
  int64_t rows = 0, cols = 0;
  int64_t groups = 0;       // ceil(rows / 16)
  int64_t group_bytes = 0;  // stride between groups (a multiple of 64)
  AlignedBuffer buf;

  const uint8_t* group(int64_t g) const { return static_cast<const uint8_t*>(buf.data()) + g * group_bytes; }
};

struct MatmulInput::Impl {
  const float* x = nullptr;  // the caller's floats, read by float-weight kernels
  int64_t n_tokens = 0, cols = 0, ld = 0;
  bool int8 = false;
  // Quantized activations, token-major: q[t * cols + k]; d[t * nb + b] (fp16-rounded scale as a
  // float); corr[t * nb + b] = -128 * sum of block b's quants (the unsigned-weight correction).
  AlignedBuffer q, d, corr;

  const int8_t* qrow(int64_t t) const { return static_cast<const int8_t*>(q.data()) + t * cols; }
  const float* drow(int64_t t) const { return static_cast<const float*>(d.data()) + t * (cols / 32); }
  const int32_t* crow(int64_t t) const { return static_cast<const int32_t*>(corr.data()) + t * (cols / 32); }
};

// Computes y for row groups [g0, g1) and tokens [t0, t1).
using RangeKernel = void (*)(const PackedMatrix::Impl& w, const MatmulInput::Impl& x, float* y, int64_t ldy,
                             int64_t g0, int64_t g1, int64_t t0, int64_t t1);
// Quantizes n_tokens rows of `cols` floats (row stride ld) into x's q/d/corr.
using QuantizeKernel = void (*)(const float* src, int64_t ld, int64_t t0, int64_t t1, MatmulInput::Impl& x);

struct KernelSet {
  RangeKernel int8;
  RangeKernel f32;
  RangeKernel f16;
  RangeKernel bf16;
  QuantizeKernel quantize;
  int int8_tile_groups;  // row groups a kernel prefers to take at once (task sizes are multiples)
};

const KernelSet& scalar_kernels();
const KernelSet& avx2_kernels();    // only call when the CPU has AVX2+FMA+F16C
const KernelSet& avx512_kernels();  // only call when the CPU has AVX-512 F/BW/VL/DQ/VNNI

Isa best_supported_isa();  // what the CPU supports, ignoring LLMD_ISA
const KernelSet& kernels_for(Isa isa);

// matmul() with an explicit kernel set; `isa` must be supported by the CPU.
void matmul_isa(const PackedMatrix& w, const MatmulInput& x, float* y, int64_t ldy, ThreadPool& pool,
                Isa isa);

// The weights as the kernels see them (after any requantization), row-major floats: for tests.
void unpack_rows(const PackedMatrix& w, float* dst);

}  // namespace llmd::engine::cpu
