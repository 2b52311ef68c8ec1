// The attention kernel compiled for scalar (see attention_impl.hpp).
#define LLMD_ISA_NS scalar
#include "engine/cpu/attention_impl.hpp"
