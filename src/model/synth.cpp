#include "model/synth.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <thread>

#include "common/error.hpp"
#include "model/gguf.hpp"
#include "model/gguf_writer.hpp"
#include "model/quantize.hpp"

namespace llmd::model {
namespace {

constexpr std::array kPresets = {
    SynthPreset{"tiny", 4096, 2048, 256, 4, 8, 4, 768, 1e-5f, 10000.0f},
    SynthPreset{"160m", 32000, 2048, 768, 12, 12, 12, 3072, 1e-6f, 10000.0f},
    SynthPreset{"1b", 32000, 2048, 2048, 22, 32, 4, 5632, 1e-5f, 10000.0f},
    SynthPreset{"8b", 128256, 8192, 4096, 32, 32, 8, 14336, 1e-5f, 500000.0f},
};

// Matrices N(0, 0.02) as in GPT-2/Llama initialisation: after RMS norm every activation has unit
// scale, so logits and residuals stay in single digits at every preset (and within f16 range).
constexpr float kWeightStd = 0.02f;
// Norm weights near 1, jittered so a kernel that ignores them is caught by comparison tests.
constexpr float kNormJitter = 0.02f;
// Floats generated per work unit: large enough to amortise thread start-up, small enough (16 MB)
// that even the 8b preset streams with a bounded footprint.
constexpr int64_t kChunkElems = int64_t{4} << 20;

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}

// xoshiro256+: fast, and seeded per row so the output is the same for any thread count.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& w : s_) w = splitmix64(seed);
  }
  uint64_t next() {
    const uint64_t r = s_[0] + s_[3];
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = (s_[3] << 45) | (s_[3] >> 19);
    return r;
  }
  // Approximately N(0, 1): the sum of four 16-bit uniforms (Irwin-Hall), centred and scaled to unit
  // variance. One generator call per value instead of a log/sqrt/cos: billions are drawn for 8b.
  float normal() {
    const uint64_t r = next();
    const int64_t s =
        static_cast<int64_t>((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
    return static_cast<float>(s - 131070) * (1.7320508f / 65536.0f);
  }

 private:
  uint64_t s_[4];
};

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> dims;
  GgmlType type;
  float mean;
  float std;
};

// Generates rows [r0, r1) of a tensor into `out` (row_bytes each), one seeded stream per row.
void fill_rows(const TensorSpec& t, uint64_t tensor_seed, int64_t r0, int64_t r1, std::vector<float>& scratch,
               uint8_t* out) {
  const auto cols = static_cast<int64_t>(t.dims[0]);
  const uint64_t row_bytes = ggml_row_size(t.type, t.dims[0]);
  scratch.resize(static_cast<size_t>(cols));
  for (int64_t r = r0; r < r1; ++r) {
    uint64_t s = tensor_seed ^ (static_cast<uint64_t>(r) * 0xd1b54a32d192ed03ull);
    Rng rng(splitmix64(s));
    for (auto& v : scratch) v = t.mean + t.std * rng.normal();
    quantize(t.type, scratch, {out + static_cast<uint64_t>(r - r0) * row_bytes, row_bytes});
  }
}

GgufWriter::Fill make_fill(TensorSpec spec, uint64_t seed, unsigned threads) {
  return [spec = std::move(spec), seed, threads](TensorSink& sink) {
    const uint64_t tensor_seed = seed ^ fnv1a(spec.name);
    const int64_t cols = static_cast<int64_t>(spec.dims[0]);
    int64_t rows = 1;
    for (size_t i = 1; i < spec.dims.size(); ++i) rows *= static_cast<int64_t>(spec.dims[i]);
    const uint64_t row_bytes = ggml_row_size(spec.type, spec.dims[0]);
    const int64_t chunk_rows = std::max<int64_t>(1, kChunkElems / cols);
    std::vector<uint8_t> buf;
    std::vector<std::vector<float>> scratch(threads);
    for (int64_t c0 = 0; c0 < rows; c0 += chunk_rows) {
      const int64_t c1 = std::min(rows, c0 + chunk_rows);
      buf.resize(static_cast<size_t>(c1 - c0) * row_bytes);
      const auto n_workers = static_cast<int64_t>(std::min<int64_t>(threads, c1 - c0));
      auto work = [&](int64_t w) {
        const int64_t a = c0 + (c1 - c0) * w / n_workers, b = c0 + (c1 - c0) * (w + 1) / n_workers;
        fill_rows(spec, tensor_seed, a, b, scratch[static_cast<size_t>(w)],
                  buf.data() + static_cast<uint64_t>(a - c0) * row_bytes);
      };
      std::vector<std::jthread> pool;
      for (int64_t w = 1; w < n_workers; ++w) pool.emplace_back(work, w);
      work(0);
      pool.clear();  // joins
      sink.write(buf);
    }
  };
}

void set_tokenizer_from(GgufWriter& w, const std::string& path, int64_t& n_vocab) {
  const GgufFile src = GgufFile::open(path);
  const auto tokens = src.get_string_array("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) fail("{}: no tokenizer.ggml.tokens to copy a tokenizer from", path);
  for (const auto& [key, value] : src.metadata())
    if (key.starts_with("tokenizer.")) w.set(key, value);
  n_vocab = static_cast<int64_t>(tokens->size());
}

}  // namespace

std::span<const SynthPreset> synth_presets() {
  return kPresets;
}

const SynthPreset* find_synth_preset(std::string_view name) {
  for (const auto& p : kPresets)
    if (p.name == name) return &p;
  return nullptr;
}

GgmlType parse_synth_dtype(std::string_view name) {
  const auto t = ggml_type_from_name(name);
  if (!t || !can_quantize(*t)) fail("unknown dtype '{}' (choose f32, f16, bf16, q8_0, q4_0)", name);
  return *t;
}

uint32_t llama_file_type(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
      return 0;  // LLAMA_FTYPE_ALL_F32
    case GgmlType::F16:
      return 1;  // LLAMA_FTYPE_MOSTLY_F16
    case GgmlType::Q4_0:
      return 2;  // LLAMA_FTYPE_MOSTLY_Q4_0
    case GgmlType::Q8_0:
      return 7;  // LLAMA_FTYPE_MOSTLY_Q8_0
    case GgmlType::BF16:
      return 32;  // LLAMA_FTYPE_MOSTLY_BF16
    default:
      fail("no llama.cpp file type for {}", ggml_type_name(type));
  }
}

SynthVocab make_synth_vocab(int64_t n) {
  static constexpr std::string_view kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's space
  static constexpr std::string_view kLower = "etaoinshrdlcumwfgypbvkjxqz";
  static constexpr std::string_view kSingles =
      "etaoinshrdlcumwfgypbvkjxqzETAOINSHRDLCUMWFGYPBVKJXQZ0123456789.,!?'\"-:;()";
  constexpr int64_t kFixed = 3 + 256;
  if (n <= kFixed) fail("a self-made vocab needs more than {} tokens, asked for {}", kFixed, n);

  SynthVocab v;
  v.tokens.reserve(static_cast<size_t>(n));
  auto special = [&](std::string s, int32_t type) {
    v.tokens.push_back(std::move(s));
    v.scores.push_back(0.0f);
    v.types.push_back(type);
  };
  special("<unk>", 2);
  special("<s>", 3);
  special("</s>", 3);
  for (int b = 0; b < 256; ++b) special(fmt::format("<0x{:02X}>", b), 6);
  // Normal pieces score by rank (higher merges first), like a trained SentencePiece model.
  auto piece = [&](std::string s) {
    if (static_cast<int64_t>(v.tokens.size()) >= n) return false;
    v.scores.push_back(-static_cast<float>(v.tokens.size() - kFixed));
    v.tokens.push_back(std::move(s));
    v.types.push_back(1);
    return true;
  };
  piece(std::string(kSpace));
  for (char c : kSingles) piece(std::string(1, c));
  for (char c : kSingles) piece(std::string(kSpace) + c);
  // Then runs of lowercase letters, length 2, 3, ... each with and without a leading space.
  for (size_t len = 2; static_cast<int64_t>(v.tokens.size()) < n; ++len) {
    std::vector<size_t> digit(len, 0);
    for (bool more = true; more;) {
      std::string s;
      for (size_t d : digit) s += kLower[d];
      if (!piece(std::string(kSpace) + s) || !piece(s)) break;
      more = false;
      for (size_t i = len; i-- > 0;) {
        if (++digit[i] < kLower.size()) {
          more = true;
          break;
        }
        digit[i] = 0;
      }
    }
  }
  return v;
}

SynthSummary synthesize_model(const SynthOptions& opt) {
  const SynthPreset& p = opt.preset;
  if (opt.out.empty()) fail("synth: no output path");
  if (!can_quantize(opt.dtype)) fail("synth: cannot write weights as {}", ggml_type_name(opt.dtype));
  if (p.n_embd % p.n_head != 0 || p.n_head % p.n_head_kv != 0 || p.n_embd % 32 != 0 || p.n_ff % 32 != 0)
    fail("synth: preset '{}' has inconsistent shapes", p.name);
  const unsigned threads = opt.threads ? opt.threads : std::max(1u, std::thread::hardware_concurrency());

  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", fmt::format("llmd-synth-{}-{}", p.name, ggml_type_name(opt.dtype)));
  w.set_uint32("general.file_type", llama_file_type(opt.dtype));
  w.set_uint32("general.quantization_version", 2);

  int64_t n_vocab = p.n_vocab;
  SynthSummary sum;
  // Tokenizer first: a missing or bad tokenizer file fails before anything is generated.
  if (!opt.tokenizer_from.empty()) {
    set_tokenizer_from(w, opt.tokenizer_from, n_vocab);
  } else {
    set_synth_tokenizer(w, n_vocab);
  }
  const int64_t head_dim = p.n_embd / p.n_head;
  w.set_uint32("llama.vocab_size", static_cast<uint32_t>(n_vocab));
  w.set_uint32("llama.context_length", static_cast<uint32_t>(p.n_ctx));
  w.set_uint32("llama.embedding_length", static_cast<uint32_t>(p.n_embd));
  w.set_uint32("llama.block_count", static_cast<uint32_t>(p.n_layer));
  w.set_uint32("llama.feed_forward_length", static_cast<uint32_t>(p.n_ff));
  w.set_uint32("llama.attention.head_count", static_cast<uint32_t>(p.n_head));
  w.set_uint32("llama.attention.head_count_kv", static_cast<uint32_t>(p.n_head_kv));
  w.set_float32("llama.attention.layer_norm_rms_epsilon", p.rms_eps);
  w.set_float32("llama.rope.freq_base", p.rope_base);
  w.set_uint32("llama.rope.dimension_count", static_cast<uint32_t>(head_dim));

  const auto E = static_cast<uint64_t>(p.n_embd), V = static_cast<uint64_t>(n_vocab),
             F = static_cast<uint64_t>(p.n_ff), KV = static_cast<uint64_t>(p.n_head_kv * head_dim);
  auto add = [&](std::string name, std::vector<uint64_t> dims, bool norm) {
    const TensorSpec spec{std::move(name), std::move(dims), norm ? GgmlType::F32 : opt.dtype,
                          norm ? 1.0f : 0.0f, norm ? kNormJitter : kWeightStd};
    uint64_t n = 1;
    for (uint64_t d : spec.dims) n *= d;
    sum.n_params += n;
    w.add_tensor(spec.name, spec.dims, spec.type, make_fill(spec, opt.seed, threads));
  };
  add("token_embd.weight", {E, V}, false);
  for (int64_t l = 0; l < p.n_layer; ++l) {
    const std::string b = fmt::format("blk.{}.", l);
    add(b + "attn_norm.weight", {E}, true);
    add(b + "attn_q.weight", {E, E}, false);
    add(b + "attn_k.weight", {E, KV}, false);
    add(b + "attn_v.weight", {E, KV}, false);
    add(b + "attn_output.weight", {E, E}, false);
    add(b + "ffn_norm.weight", {E}, true);
    add(b + "ffn_gate.weight", {E, F}, false);
    add(b + "ffn_up.weight", {E, F}, false);
    add(b + "ffn_down.weight", {F, E}, false);
  }
  add("output_norm.weight", {E}, true);
  add("output.weight", {E, V}, false);

  w.write(opt.out);
  sum.n_vocab = n_vocab;
  sum.n_tensors = w.tensor_count();
  sum.file_bytes = GgufFile::open(opt.out).file_size();
  return sum;
}

void set_synth_tokenizer(GgufWriter& w, int64_t n_vocab) {
  const SynthVocab v = make_synth_vocab(n_vocab);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", v.tokens);
  w.set_float32_array("tokenizer.ggml.scores", v.scores);
  w.set_int32_array("tokenizer.ggml.token_type", v.types);
  w.set_uint32("tokenizer.ggml.bos_token_id", 1);
  w.set_uint32("tokenizer.ggml.eos_token_id", 2);
  w.set_uint32("tokenizer.ggml.unknown_token_id", 0);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
}

}  // namespace llmd::model
