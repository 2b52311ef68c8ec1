#pragma once
// Synthetic `llama`-architecture models: the shapes, metadata keys and tensor names of real ones
// (llama.cpp's), filled with seeded random weights. They exercise the engine and its benchmarks at
// real sizes without shipping weights; outputs are meaningless but finite and deterministic.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/ggml_type.hpp"

namespace llmd::model {

struct SynthPreset {
  std::string_view name;
  int64_t n_vocab;  // of the self-made vocab; a copied tokenizer brings its own size
  int64_t n_ctx;
  int64_t n_embd;
  int64_t n_layer;
  int64_t n_head;
  int64_t n_head_kv;
  int64_t n_ff;
  float rms_eps;
  float rope_base;
};

// tiny, 160m (JackFram/llama-160m), 1b (TinyLlama 1.1B), 8b (Llama 3 8B).
std::span<const SynthPreset> synth_presets();
const SynthPreset* find_synth_preset(std::string_view name);

// Storage types the 2-D weights can be written in: f32, f16, bf16, q8_0, q4_0 (case-insensitive).
// Throws llmd::Error naming the accepted ones.
GgmlType parse_synth_dtype(std::string_view name);
// llama.cpp's general.file_type (llama_ftype) for a model whose matrices are of `type`.
uint32_t llama_file_type(GgmlType type);

struct SynthOptions {
  SynthPreset preset;
  GgmlType dtype = GgmlType::F32;  // of every 2-D weight; norms stay F32 as in llama.cpp's files
  std::string out;
  std::string tokenizer_from;  // a GGUF whose tokenizer.* metadata is copied; empty: self-made vocab
  uint64_t seed = 0;
  unsigned threads = 0;  // 0: all hardware threads. The file does not depend on it.
};

struct SynthSummary {
  int64_t n_vocab = 0;
  uint64_t n_params = 0;
  uint64_t n_tensors = 0;
  uint64_t file_bytes = 0;
};

// Writes the model to opt.out (atomically, tensor by tensor, never holding a whole tensor).
// Throws llmd::Error for a bad option, an unreadable tokenizer file or an unwritable output path.
SynthSummary synthesize_model(const SynthOptions& opt);

// A SentencePiece-style ('llama' model) vocab of n tokens: <unk>, <s>, </s>, the 256 byte tokens
// <0x00>..<0xFF>, then unique normal pieces ("▁", letters, "▁" + letter runs), shortest first.
struct SynthVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;  // llama.cpp's token types: 1 normal, 2 unknown, 3 control, 6 byte
};
SynthVocab make_synth_vocab(int64_t n);

class GgufWriter;
// Writes make_synth_vocab(n_vocab) as a GGUF's tokenizer.* metadata (BOS 1, EOS 2, UNK 0, BOS added).
void set_synth_tokenizer(GgufWriter& w, int64_t n_vocab);

}  // namespace llmd::model
