#pragma once
// The CPU compute backend: a Llama forward pass over a batch of sequences against a paged KV cache
// held in host memory. Weights are packed once at construction; every buffer a step needs is sized
// then for BackendConfig's limits, so forward() allocates nothing.
#include <memory>

#include "engine/backend.hpp"
#include "model/gguf.hpp"

namespace llmd::engine::cpu {

// `file` must outlive the backend.
std::unique_ptr<Backend> make_cpu_backend(const model::GgufFile& file, const BackendConfig& config);

}  // namespace llmd::engine::cpu
