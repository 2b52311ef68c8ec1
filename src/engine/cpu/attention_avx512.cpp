// The attention kernel compiled for avx512 (see attention_impl.hpp).
#define LLMD_ISA_NS avx512
#include "engine/cpu/attention_impl.hpp"
