#include "model/kv_fingerprint.hpp"

#include <fmt/format.h>

#include "model/llama_config.hpp"

namespace llmd::model {

std::string kv_fingerprint(const GgufFile& model) {
  return fmt::format("{}:{}", LlamaConfig::from_gguf(model).architecture, model.file_size());
}

std::string sim_kv_fingerprint(const GgufFile* model, int64_t vocab) {
  return model ? fmt::format("sim:{}", model->file_size()) : fmt::format("sim:vocab{}", vocab);
}

}  // namespace llmd::model
