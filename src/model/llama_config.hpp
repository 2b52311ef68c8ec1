#pragma once
// Hyper-parameters of a `llama`-architecture model (Llama 2/3, Mistral, TinyLlama, SmolLM), read
// from GGUF metadata with llama.cpp's key names and defaults.
#include <cstdint>
#include <string>
#include <vector>

#include "model/gguf.hpp"

namespace llmd::model {

enum class RopeLayout {
  kNormal,  // rotate pairs (2i, 2i+1): llama.cpp's LLAMA_ROPE_TYPE_NORM, used by `llama`
  kNeox,    // rotate pairs (i, i + d/2): GPT-NeoX / Qwen layout
};

struct LlamaConfig {
  static constexpr float kDefaultRopeBase = 10000.0f;
  static constexpr float kDefaultRmsEps = 1e-5f;

  std::string architecture;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;  // key/value length per head
  int64_t n_rot = 0;     // dimensions rotated by RoPE (== head_dim for llama)
  float rms_eps = kDefaultRmsEps;
  float rope_base = kDefaultRopeBase;
  float rope_scale = 1.0f;  // linear scaling: positions are multiplied by 1/factor
  RopeLayout rope_layout = RopeLayout::kNormal;
  bool tied_output = false;     // no output.weight: logits use token_embd.weight
  bool has_rope_freqs = false;  // rope_freqs.weight (Llama 3.1 scaling) present

  // Throws llmd::Error naming the file and the key for a missing or inconsistent value.
  static LlamaConfig from_gguf(const GgufFile& f);
};

}  // namespace llmd::model
