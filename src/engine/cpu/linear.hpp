#pragma once
// A linear layer made of one or more GGUF weight matrices that read the same input and write
// side by side into one output row (Q|K|V, gate|up). Neighbouring matrices of the same type are
// packed as one matrix, so one matmul call covers them and the threads split the whole width.
#include <span>
#include <vector>

#include "engine/cpu/matmul.hpp"
#include "model/gguf.hpp"

namespace llmd::engine::cpu {

class Linear {
 public:
  Linear() = default;
  Linear(const model::GgufFile& file, std::span<const model::GgufTensorInfo* const> parts, ThreadPool& pool);

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  bool wants_int8() const;
  // y: n_tokens rows of out_features() floats, row stride ldy.
  void run(const MatmulInput& x, float* y, int64_t ldy, ThreadPool& pool) const;

 private:
  struct Part {
    PackedMatrix w;
    int64_t col = 0;  // first output column
  };
  std::vector<Part> parts_;
  int64_t in_ = 0, out_ = 0;
};

}  // namespace llmd::engine::cpu
