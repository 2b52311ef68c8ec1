#pragma once
// ggml's block formats as GGUF stores them, and the scalar conversions the CPU kernels and their
// tests share. Only what the matmul kernels consume is here; the layouts are ggml's, byte for byte.
#include <cstdint>

#include "model/ggml_type.hpp"

namespace llmd::engine::cpu {

inline constexpr int kQ8Block = 32;  // elements per Q8_0 / Q4_0 block (and per activation block)
inline constexpr int kQkK = 256;     // elements per K-quant super-block

struct BlockQ8_0 {
  uint16_t d;  // fp16 scale
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ4_0 {
  uint16_t d;      // fp16 scale; value = (nibble - 8) * d
  uint8_t qs[16];  // low nibbles: elements 0..15, high nibbles: elements 16..31
};
static_assert(sizeof(BlockQ4_0) == 18);

struct BlockQ4_K {
  uint16_t d;            // fp16 super-block scale of the sub-block scales
  uint16_t dmin;         // fp16 super-block scale of the sub-block mins
  uint8_t scales[12];    // 8 pairs of 6-bit (scale, min)
  uint8_t qs[kQkK / 2];  // 4-bit quants
};
static_assert(sizeof(BlockQ4_K) == 144);

struct BlockQ6_K {
  uint8_t ql[kQkK / 2];      // low 4 bits
  uint8_t qh[kQkK / 4];      // high 2 bits
  int8_t scales[kQkK / 16];  // 8-bit scale per 16 elements
  uint16_t d;                // fp16 super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210);

// Converts one row of n elements of `type` (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K) to floats,
// exactly as ggml's dequantize_row_* does. Throws llmd::Error for any other type.
void dequantize_row(model::GgmlType type, const void* src, float* dst, int64_t n);

// One 32-element activation block quantized like ggml's x86 quantize_row_q8_0 (the path llama.cpp
// runs on these CPUs): d = amax/127 rounded to fp16, q = round-half-even(x * 127/amax). `d` gets the
// fp16-rounded scale as a float, since that is the value ggml's dot products multiply by. Returns
// the sum of the 32 quants (the kernels need it for the unsigned-weight correction).
int32_t quantize_block_q8(const float* x, int8_t* q, float* d);

// Reference quantizers (ggml's *_ref), for tests and tools that need to make weights.
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n);

}  // namespace llmd::engine::cpu
