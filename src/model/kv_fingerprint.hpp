#pragma once
// The model part of every KV block key's root (DESIGN.md "Keys of the KV cache"). `llmd serve`
// keys its blocks with it and `llmd route --tokenizer` computes the same from the same file, so
// the router's keys match the servers' KV events exactly.
#include <cstdint>
#include <string>

#include "model/gguf.hpp"

namespace llmd::model {

std::string kv_fingerprint(const GgufFile& model);  // "<architecture>:<file size>"
// `llmd serve --sim`: "sim:<file size>" over a model file, "sim:vocab<N>" over its self-made vocab.
std::string sim_kv_fingerprint(const GgufFile* model, int64_t vocab);

}  // namespace llmd::model
