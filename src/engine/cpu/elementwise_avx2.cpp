// The element-wise kernels compiled for avx2 (see elementwise_impl.hpp).
#define LLMD_ISA_NS avx2
#include "engine/cpu/elementwise_impl.hpp"
