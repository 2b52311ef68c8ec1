#include "model/llama_config.hpp"

#include "common/error.hpp"

namespace llmd::model {

LlamaConfig LlamaConfig::from_gguf(const GgufFile& f) {
  LlamaConfig c;
  auto arch = f.get_string("general.architecture");
  if (!arch) fail("{}: missing metadata 'general.architecture'", f.path());
  c.architecture = *arch;
  if (c.architecture != "llama" && c.architecture != "mistral")
    fail("{}: unsupported architecture '{}' (supported: llama)", f.path(), c.architecture);
  const std::string p = c.architecture + ".";
  auto req = [&](const std::string& key) {
    auto v = f.get_int(p + key);
    if (!v) fail("{}: missing metadata '{}{}'", f.path(), p, key);
    if (*v <= 0) fail("{}: metadata '{}{}' must be positive, is {}", f.path(), p, key, *v);
    return *v;
  };
  c.n_embd = req("embedding_length");
  c.n_layer = req("block_count");
  c.n_ff = req("feed_forward_length");
  c.n_head = req("attention.head_count");
  c.n_head_kv = f.get_int(p + "attention.head_count_kv").value_or(c.n_head);
  c.n_ctx_train = f.get_int(p + "context_length").value_or(2048);
  c.head_dim = f.get_int(p + "attention.key_length").value_or(c.n_embd / c.n_head);
  c.n_rot = f.get_int(p + "rope.dimension_count").value_or(c.head_dim);
  c.rms_eps =
      static_cast<float>(f.get_float(p + "attention.layer_norm_rms_epsilon").value_or(kDefaultRmsEps));
  c.rope_base = static_cast<float>(f.get_float(p + "rope.freq_base").value_or(kDefaultRopeBase));
  if (auto type = f.get_string(p + "rope.scaling.type"); type && *type == "linear") {
    const double factor = f.get_float(p + "rope.scaling.factor").value_or(1.0);
    if (factor <= 0) fail("{}: metadata '{}rope.scaling.factor' must be positive", f.path(), p);
    c.rope_scale = static_cast<float>(1.0 / factor);
  }

  if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0)
    fail("{}: attention.head_count {} is not a multiple of head_count_kv {}", f.path(), c.n_head,
         c.n_head_kv);
  if (c.head_dim <= 0 || c.head_dim % 2 != 0)
    fail("{}: head dimension {} must be even", f.path(), c.head_dim);
  if (c.n_rot <= 0 || c.n_rot > c.head_dim || c.n_rot % 2 != 0)
    fail("{}: rope.dimension_count {} must be even and at most the head dimension {}", f.path(), c.n_rot,
         c.head_dim);
  if (auto v = f.get_int(p + "attention.value_length"); v && *v != c.head_dim)
    fail("{}: value_length {} differs from key_length {}", f.path(), *v, c.head_dim);

  const GgufTensorInfo& emb = f.tensor("token_embd.weight");
  if (emb.dims.size() != 2 || static_cast<int64_t>(emb.dims[0]) != c.n_embd)
    fail("{}: token_embd.weight has shape that does not match embedding_length {}", f.path(), c.n_embd);
  c.n_vocab = static_cast<int64_t>(emb.dims[1]);
  if (auto v = f.get_int(p + "vocab_size"); v && *v != c.n_vocab)
    fail("{}: vocab_size {} differs from token_embd.weight rows {}", f.path(), *v, c.n_vocab);
  c.tied_output = f.find_tensor("output.weight") == nullptr;
  c.has_rope_freqs = f.find_tensor("rope_freqs.weight") != nullptr;
  return c;
}

}  // namespace llmd::model
