// The element-wise kernels compiled for avx512 (see elementwise_impl.hpp).
#define LLMD_ISA_NS avx512
#include "engine/cpu/elementwise_impl.hpp"
