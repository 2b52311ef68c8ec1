#pragma once
// One-shot generation of a single sequence on a backend: the engine core without a scheduler, for
// `llmd generate`, `llmd model bench` and tests. Prefill runs in chunks of the backend's step size.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "engine/backend.hpp"
#include "engine/block_allocator.hpp"
#include "engine/sampler.hpp"

namespace llmd::engine {

struct GenerateOptions {
  int32_t max_tokens = 16;
  SamplingParams sampling;
  bool ignore_eos = false;
};

class Generator {
 public:
  explicit Generator(Backend& backend);
  ~Generator();

  // Returns the generated tokens (the EOS that ended generation is not included). on_token is called
  // for each; returning false stops early. Throws llmd::Error when the prompt cannot be run.
  std::vector<int32_t> generate(std::span<const int32_t> prompt, const GenerateOptions& opt,
                                const std::function<bool(int32_t)>& on_token = {},
                                const std::function<bool(int32_t)>& is_eos = {});

  // Feeds tokens at the end of the sequence; returns the logits of the last one (n_vocab floats,
  // valid until the next call). For benchmarks and tests that drive the steps themselves.
  const float* feed(std::span<const int32_t> tokens);
  void reset();
  int32_t n_past() const { return n_past_; }

 private:
  void ensure_blocks(int32_t n_positions);
  Backend& backend_;
  BlockAllocator blocks_;
  std::vector<int32_t> table_;
  std::vector<float> logits_;
  Batch batch_;
  int32_t n_past_ = 0;
};

}  // namespace llmd::engine
