#pragma once
// What the CPU kernels add to ggml's block formats (model/quantize.hpp holds the formats and the
// reference conversions): the quantization of activations into 32-element int8 blocks.
#include <cstdint>
#include <span>

#include "model/ggml_type.hpp"
#include "model/quantize.hpp"

namespace llmd::engine::cpu {

inline constexpr int kQ8Block = 32;  // elements per Q8_0 / Q4_0 block (and per activation block)
inline constexpr int kQkK = 256;     // elements per K-quant super-block

using model::BlockQ4_0;
using model::BlockQ4_K;
using model::BlockQ6_K;
using model::BlockQ8_0;
using model::quantize_row_q4_0;
using model::quantize_row_q8_0;

// One row of n elements of `type` as floats, exactly as ggml's dequantize_row_* (see model::dequantize).
inline void dequantize_row(model::GgmlType type, const void* src, float* dst, int64_t n) {
  model::dequantize(type, {static_cast<const uint8_t*>(src), model::ggml_row_size(type, n)},
                    {dst, static_cast<size_t>(n)});
}

// One 32-element activation block quantized like ggml's x86 quantize_row_q8_0 (the path llama.cpp
// runs on these CPUs): d = amax/127 rounded to fp16, q = round-half-even(x * 127/amax). `d` gets the
// fp16-rounded scale as a float, since that is the value ggml's dot products multiply by. Returns
// the sum of the 32 quants (the kernels need it for the unsigned-weight correction).
int32_t quantize_block_q8(const float* x, int8_t* q, float* d);

}  // namespace llmd::engine::cpu
