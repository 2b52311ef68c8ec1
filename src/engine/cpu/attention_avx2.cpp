// The attention kernel compiled for avx2 (see attention_impl.hpp).
#define LLMD_ISA_NS avx2
#include "engine/cpu/attention_impl.hpp"
