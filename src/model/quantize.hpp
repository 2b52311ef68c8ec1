#pragma once
// Row conversions between fp32 and the ggml storage types, bit-exact with ggml's reference code
// (quantize_row_*_ref, dequantize_row_*): a file written here is byte-identical to one that
// llama.cpp's quantizer makes from the same floats, and a dequantized row equals ggml's.
#include <cstdint>
#include <span>

#include "model/ggml_type.hpp"

namespace llmd::model {

// Block layouts as ggml stores them (little-endian, packed; fp16 scales held as raw bits).
struct BlockQ8_0 {
  uint16_t d;  // fp16 scale
  int8_t qs[32];
};
struct BlockQ4_0 {
  uint16_t d;      // fp16 scale
  uint8_t qs[16];  // element j in the low nibble of byte j, element j+16 in the high nibble
};
struct BlockQ4_K {
  uint16_t d;          // fp16 super-block scale of the 6-bit scales
  uint16_t dmin;       // fp16 super-block scale of the 6-bit mins
  uint8_t scales[12];  // 8 scales and 8 mins, 6 bits each
  uint8_t qs[128];
};
struct BlockQ6_K {
  uint8_t ql[128];  // low 4 bits
  uint8_t qh[64];   // high 2 bits
  int8_t scales[16];
  uint16_t d;  // fp16 super-block scale
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ6_K) == 210);

// n is the number of floats; it must be a multiple of the type's block size (32 for Q8_0/Q4_0).
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n);
void quantize_row_f16(const float* x, uint16_t* y, int64_t n);
void quantize_row_bf16(const float* x, uint16_t* y, int64_t n);

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n);
void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n);
void dequantize_row_q4_k(const BlockQ4_K* x, float* y, int64_t n);
void dequantize_row_q6_k(const BlockQ6_K* x, float* y, int64_t n);
void dequantize_row_f16(const uint16_t* x, float* y, int64_t n);
void dequantize_row_bf16(const uint16_t* x, float* y, int64_t n);

// Types the generic entry points below handle.
bool can_quantize(GgmlType type);    // F32, F16, BF16, Q8_0, Q4_0
bool can_dequantize(GgmlType type);  // those and Q4_K, Q6_K

// Converts x.size() floats into `out`, which must hold exactly ggml_row_size(type, x.size()) bytes.
// Throws llmd::Error for an unsupported type or mismatched sizes (a control-path API: used when
// writing files, not per token).
void quantize(GgmlType type, std::span<const float> x, std::span<uint8_t> out);
// Converts ggml_row_size(type, y.size()) bytes of `data` into y.size() floats; same rules.
void dequantize(GgmlType type, std::span<const uint8_t> data, std::span<float> y);

}  // namespace llmd::model
