#include "engine/cpu/linear.hpp"

#include <cstring>

#include "common/error.hpp"

namespace llmd::engine::cpu {

Linear::Linear(const model::GgufFile& file, std::span<const model::GgufTensorInfo* const> parts,
               ThreadPool& pool) {
  in_ = static_cast<int64_t>(parts.front()->dims[0]);
  for (const auto* t : parts) {
    if (t->dims.size() != 2 || static_cast<int64_t>(t->dims[0]) != in_)
      fail("{}: tensor '{}' should be a matrix with rows of {}", file.path(), t->name, in_);
    if (!matmul_supports(t->type))
      fail("{}: tensor '{}' has type {}, which the CPU backend cannot compute with", file.path(), t->name,
           model::ggml_type_name(t->type));
  }
  std::vector<uint8_t> joined;
  for (size_t i = 0; i < parts.size();) {
    size_t j = i + 1;
    while (j < parts.size() && parts[j]->type == parts[i]->type) ++j;
    int64_t rows = 0;
    for (size_t k = i; k < j; ++k) rows += static_cast<int64_t>(parts[k]->dims[1]);
    const void* data = file.tensor_data(*parts[i]);
    if (j - i > 1) {  // same type side by side: one contiguous matrix
      joined.clear();
      for (size_t k = i; k < j; ++k) {
        const uint8_t* p = file.tensor_data(*parts[k]);
        joined.insert(joined.end(), p, p + parts[k]->n_bytes);
      }
      data = joined.data();
    }
    parts_.push_back({PackedMatrix::pack(parts[i]->type, data, rows, in_, pool), out_});
    out_ += rows;
    i = j;
  }
}

bool Linear::wants_int8() const {
  for (const auto& p : parts_)
    if (p.w.wants_int8()) return true;
  return false;
}

void Linear::run(const MatmulInput& x, float* y, int64_t ldy, ThreadPool& pool) const {
  for (const auto& p : parts_) matmul(p.w, x, y + p.col, ldy, pool);
}

}  // namespace llmd::engine::cpu
