// The element-wise kernels compiled for scalar (see elementwise_impl.hpp).
#define LLMD_ISA_NS scalar
#include "engine/cpu/elementwise_impl.hpp"
