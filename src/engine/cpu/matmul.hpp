#pragma once
// Matrix products of the CPU backend: y[t, n] = sum_k x[t, k] * W[n, k].
//
// Weights are packed once at load into the layout the kernels want (16-row groups, int8 types
// interleaved across rows by 4 columns for vpdpbusd, floats column by column; see
// matmul_internal.hpp); activations are prepared once per input (quantized to 8-bit blocks when an
// int8 weight consumes them) and reused by every matrix that reads the same input (Q, K and V;
// gate and up).
#include <cstdint>
#include <memory>
#include <string_view>

#include "engine/cpu/thread_pool.hpp"
#include "model/ggml_type.hpp"

namespace llmd::engine::cpu {

enum class Isa { kScalar, kAvx2, kAvx512 };
Isa detect_isa();  // best the running CPU supports (and LLMD_ISA permits: scalar|avx2|avx512)
std::string_view isa_name(Isa isa);  // "scalar", "avx2", "avx512"

// Can the kernels compute with weights of this type?
bool matmul_supports(model::GgmlType type);

class PackedMatrix {
 public:
  // `data` holds `rows` rows of `cols` elements of `type` in ggml's layout (as in a GGUF file).
  // Throws llmd::Error for an unsupported type or a cols not a multiple of the type's block.
  static PackedMatrix pack(model::GgmlType type, const void* data, int64_t rows, int64_t cols,
                           ThreadPool& pool);
  PackedMatrix();
  PackedMatrix(PackedMatrix&&) noexcept;
  PackedMatrix& operator=(PackedMatrix&&) noexcept;
  ~PackedMatrix();

  int64_t rows() const;
  int64_t cols() const;
  model::GgmlType type() const;
  bool wants_int8() const;  // consumes 8-bit quantized activations
  size_t bytes() const;     // memory held

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Activations prepared for the matrices that read them. Buffers grow to the largest input seen and
// are then reused: preparing an input of a size seen before allocates nothing.
class MatmulInput {
 public:
  MatmulInput();
  MatmulInput(MatmulInput&&) noexcept;
  MatmulInput& operator=(MatmulInput&&) noexcept;
  ~MatmulInput();

  // x is n_tokens rows of `cols` floats, row stride `ld` (>= cols). `x` must stay valid until the
  // last matmul with this input. Quantizes when `int8` is true (any consumer wants_int8()).
  void prepare(const float* x, int64_t n_tokens, int64_t cols, int64_t ld, bool int8, ThreadPool& pool);

  int64_t n_tokens() const;
  int64_t cols() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// y has n_tokens rows of W.rows() floats with row stride ldy (>= W.rows()).
void matmul(const PackedMatrix& w, const MatmulInput& x, float* y, int64_t ldy, ThreadPool& pool);

}  // namespace llmd::engine::cpu
