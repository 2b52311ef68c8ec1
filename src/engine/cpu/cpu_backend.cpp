#include "engine/cpu/cpu_backend.hpp"
#include "common/shared_arena.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>
#include <type_traits>
#include <vector>

#include "common/error.hpp"
#include "engine/cpu/attention.hpp"
#include "engine/cpu/linear.hpp"
#include "engine/cpu/matmul.hpp"
#include "engine/cpu/ops.hpp"
#include "engine/cpu/thread_pool.hpp"
#include "model/quantize.hpp"

namespace llmd::engine::cpu {
namespace {

using model::GgufFile;
using model::GgufTensorInfo;

// Default context when the caller sets none: the training context, capped so that the RoPE table
// and one sequence's KV stay modest for 128k-context models.
constexpr int32_t kDefaultMaxSeqLenCap = 4096;

std::vector<float> f32_vector(const GgufFile& f, const std::string& name, int64_t n) {
  const GgufTensorInfo& t = f.tensor(name);
  if (static_cast<int64_t>(t.n_elements) != n)
    fail("{}: tensor '{}' has {} elements, expected {}", f.path(), name, t.n_elements, n);
  std::vector<float> out(n);
  model::dequantize(t.type, {f.tensor_data(t), t.n_bytes}, out);
  return out;
}

struct Layer {
  std::vector<float> attn_norm, ffn_norm;
  Linear qkv, wo, gate_up, down;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(const GgufFile& file, const BackendConfig& cfg);

  const model::LlamaConfig& config() const override { return c_; }
  int32_t block_size() const override { return bs_; }
  int32_t n_blocks() const override { return n_blocks_; }
  int32_t max_seq_len() const override { return max_seq_len_; }
  int32_t max_batch_tokens() const override { return max_tokens_; }
  std::string describe() const override;
  std::expected<void, std::string> forward(const Batch& batch, float* logits) override;
  std::optional<KvRegion> kv_region() override;

 private:
  const SharedArena* kv_shared_arena() const override { return &kv_arena_; }
  uint8_t* kv_base() { return reinterpret_cast<uint8_t*>(kv_arena_.data()); }
  uint8_t* k(int32_t il) { return kv_base() + (2 * size_t(il)) * kv_layer_bytes_; }
  uint8_t* v(int32_t il) { return kv_base() + (2 * size_t(il) + 1) * kv_layer_bytes_; }
  std::expected<void, std::string> plan(const Batch& batch);
  void embed(int64_t n_tokens);
  void layer(int32_t il, int64_t n_tokens);
  void store_kv(int32_t il, int64_t n_tokens);
  template <class T>
  void store_token(int32_t il, int64_t phys, int32_t slot, const float* kv, int thread);
  void output(const Batch& batch, float* logits);

  const GgufFile& file_;
  model::LlamaConfig c_;
  ThreadPool pool_;
  int32_t bs_, n_blocks_, max_seq_len_, max_tokens_, max_seqs_;
  KvDtype kv_dtype_;

  const GgufTensorInfo* token_embd_ = nullptr;
  std::vector<Layer> layers_;
  std::vector<float> output_norm_;
  Linear lm_head_;
  RopeTable rope_;

  // KV pools, one K and one V per layer (layout in attention.hpp), in one arena K0 V0 K1 V1 ...:
  // a block is then 2 * n_layer runs at one stride, which is what a KV transfer reads and writes.
  size_t kv_elem_bytes_;
  size_t kv_layer_bytes_;
  // Shared memory, so that a decode server on this host can map it and copy blocks straight out.
  SharedArena kv_arena_;

  // Step state, sized once for max_tokens_ / max_seqs_.
  int64_t q_dim_, kv_dim_, qkv_dim_;
  std::vector<int32_t> tok_, pos_, seq_of_;
  std::vector<AttentionSeq> seqs_;
  std::vector<AttentionTile> tiles_;
  std::vector<float> x_, xn_, qkv_, attn_, tmp_, gu_, act_, out_rows_, att_scratch_;
  std::vector<_Float16> kv_half_;  // per thread: one token's K and V narrowed for the cache
  MatmulInput in_;
};

CpuBackend::CpuBackend(const GgufFile& file, const BackendConfig& cfg)
    : file_(file),
      c_(model::LlamaConfig::from_gguf(file)),
      pool_(cfg.threads > 0 ? cfg.threads
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))),
      bs_(cfg.kv.block_size),
      kv_dtype_(cfg.kv.dtype) {
  if (bs_ != 8 && bs_ != 16 && bs_ != 32 && bs_ != 64)
    fail("KV block size must be 8, 16, 32 or 64, got {}", bs_);
  if (cfg.max_batch_tokens <= 0 || cfg.max_seqs <= 0)
    fail("max batch tokens and max sequences must be positive");
  max_seq_len_ = cfg.max_seq_len > 0
                     ? cfg.max_seq_len
                     : static_cast<int32_t>(std::min<int64_t>(c_.n_ctx_train, kDefaultMaxSeqLenCap));
  max_tokens_ = cfg.max_batch_tokens;
  max_seqs_ = cfg.max_seqs;
  n_blocks_ = cfg.kv.n_blocks > 0 ? cfg.kv.n_blocks : (max_seq_len_ + bs_ - 1) / bs_;

  const int64_t d = c_.n_embd;
  q_dim_ = c_.n_head * c_.head_dim;
  kv_dim_ = c_.n_head_kv * c_.head_dim;
  qkv_dim_ = q_dim_ + 2 * kv_dim_;

  token_embd_ = &file.tensor("token_embd.weight");
  if (!model::can_dequantize(token_embd_->type))
    fail("{}: token_embd.weight type {} is not supported", file.path(),
         model::ggml_type_name(token_embd_->type));
  auto expect_shape = [&](const std::string& name, int64_t cols, int64_t rows) {
    const GgufTensorInfo& t = file.tensor(name);
    if (t.dims.size() != 2 || static_cast<int64_t>(t.dims[0]) != cols ||
        static_cast<int64_t>(t.dims[1]) != rows)
      fail("{}: tensor '{}' has the wrong shape (expected [{}, {}])", file.path(), name, cols, rows);
    return &t;
  };
  layers_.resize(c_.n_layer);
  for (int64_t il = 0; il < c_.n_layer; ++il) {
    const std::string p = fmt::format("blk.{}.", il);
    Layer& L = layers_[il];
    L.attn_norm = f32_vector(file, p + "attn_norm.weight", d);
    L.ffn_norm = f32_vector(file, p + "ffn_norm.weight", d);
    const GgufTensorInfo* qkv[] = {expect_shape(p + "attn_q.weight", d, q_dim_),
                                   expect_shape(p + "attn_k.weight", d, kv_dim_),
                                   expect_shape(p + "attn_v.weight", d, kv_dim_)};
    L.qkv = Linear(file, qkv, pool_);
    const GgufTensorInfo* wo[] = {expect_shape(p + "attn_output.weight", q_dim_, d)};
    L.wo = Linear(file, wo, pool_);
    const GgufTensorInfo* gu[] = {expect_shape(p + "ffn_gate.weight", d, c_.n_ff),
                                  expect_shape(p + "ffn_up.weight", d, c_.n_ff)};
    L.gate_up = Linear(file, gu, pool_);
    const GgufTensorInfo* down[] = {expect_shape(p + "ffn_down.weight", c_.n_ff, d)};
    L.down = Linear(file, down, pool_);
  }
  output_norm_ = f32_vector(file, "output_norm.weight", d);
  const GgufTensorInfo* head[] = {c_.tied_output ? token_embd_
                                                 : expect_shape("output.weight", d, c_.n_vocab)};
  lm_head_ = Linear(file, head, pool_);

  std::vector<float> freq_factors;
  if (c_.has_rope_freqs) freq_factors = f32_vector(file, "rope_freqs.weight", c_.n_rot / 2);
  rope_ = RopeTable(c_, max_seq_len_, freq_factors);

  kv_elem_bytes_ = kv_dtype_ == KvDtype::kF16 ? 2 : 4;
  kv_layer_bytes_ = static_cast<size_t>(n_blocks_) * bs_ * kv_dim_ * kv_elem_bytes_;
  kv_arena_ = SharedArena::create(2 * c_.n_layer * kv_layer_bytes_);

  const int64_t T = max_tokens_;
  tok_.resize(T);
  pos_.resize(T);
  seq_of_.resize(T);
  seqs_.reserve(max_seqs_);
  tiles_.reserve((T / kAttentionTileTokens + max_seqs_) * c_.n_head_kv);
  x_.resize(T * d);
  xn_.resize(T * d);
  qkv_.resize(T * qkv_dim_);
  attn_.resize(T * q_dim_);
  tmp_.resize(T * d);
  gu_.resize(T * 2 * c_.n_ff);
  act_.resize(T * c_.n_ff);
  out_rows_.resize(static_cast<int64_t>(max_seqs_) * d);
  att_scratch_.resize(attention_scratch_floats(static_cast<int32_t>(c_.n_head / c_.n_head_kv),
                                               static_cast<int32_t>(c_.head_dim)) *
                      pool_.size());
  // Grow the activation buffers to their largest size now, so no step allocates.
  kv_half_.resize(2 * kv_dim_ * pool_.size());
  bool any_int8 = lm_head_.wants_int8();
  for (const Layer& L : layers_)
    any_int8 =
        any_int8 || L.qkv.wants_int8() || L.wo.wants_int8() || L.gate_up.wants_int8() || L.down.wants_int8();
  const int64_t widest = std::max({d, c_.n_ff, q_dim_});
  const std::vector<float> zeros(T * widest);
  in_.prepare(zeros.data(), T, widest, widest, any_int8, pool_);
}

std::optional<KvRegion> CpuBackend::kv_region() {
  KvLayout l;
  l.n_segments = static_cast<uint32_t>(2 * c_.n_layer);
  l.segment_bytes = static_cast<uint64_t>(bs_) * kv_dim_ * kv_elem_bytes_;  // a block is contiguous per pool
  l.segment_stride = kv_layer_bytes_;
  l.n_blocks = n_blocks_;
  l.block_size = bs_;
  l.dtype = kv_dtype_ == KvDtype::kF16 ? 0 : 1;
  return KvRegion{l, kv_arena_.data()};
}

std::string CpuBackend::describe() const {
  return fmt::format("cpu ({}, {} threads), KV {} blocks x {} tokens ({}), max {} tokens/step",
                     isa_name(detect_isa()), pool_.size(), n_blocks_, bs_,
                     kv_dtype_ == KvDtype::kF16 ? "f16" : "f32", max_tokens_);
}

std::expected<void, std::string> CpuBackend::plan(const Batch& batch) {
  const BatchLimits limits{max_seqs_, max_tokens_, max_seq_len_, bs_, n_blocks_, c_.n_vocab};
  if (auto ok = validate_batch(batch, limits); !ok) return ok;
  seqs_.clear();
  tiles_.clear();
  int64_t n = 0;
  for (const BatchSeq& s : batch.seqs) {
    const int64_t len = static_cast<int64_t>(s.tokens.size());
    for (int64_t i = 0; i < len; ++i) {
      tok_[n + i] = s.tokens[i];
      pos_[n + i] = static_cast<int32_t>(s.pos + i);
      seq_of_[n + i] = static_cast<int32_t>(seqs_.size());
    }
    seqs_.push_back({static_cast<int32_t>(n), static_cast<int32_t>(len), s.pos, s.block_table.data()});
    n += len;
  }
  attention_tiles(seqs_, static_cast<int32_t>(c_.n_head_kv), tiles_);
  return {};
}

void CpuBackend::embed(int64_t n_tokens) {
  const int64_t d = c_.n_embd;
  const uint8_t* base = file_.tensor_data(*token_embd_);
  const uint64_t row_bytes = model::ggml_row_size(token_embd_->type, d);
  pool_.parallel_for(n_tokens, [&](int64_t t, int) {
    model::dequantize(token_embd_->type, {base + tok_[t] * row_bytes, row_bytes},
                      {x_.data() + t * d, size_t(d)});
  });
}

void CpuBackend::store_kv(int32_t il, int64_t n_tokens) {
  pool_.parallel_for(n_tokens, [&](int64_t t, int thread) {
    const AttentionSeq& s = seqs_[seq_of_[t]];
    const int32_t p = pos_[t];
    const int64_t phys = s.block_table[p / bs_];
    const int32_t slot = p % bs_;
    const float* kv = qkv_.data() + t * qkv_dim_ + q_dim_;  // K then V, side by side
    if (kv_dtype_ == KvDtype::kF16)
      store_token<_Float16>(il, phys, slot, kv, thread);
    else
      store_token<float>(il, phys, slot, kv, thread);
  });
}

// One token's K and V into its slot: V rows are contiguous ([slot][hd]); K is dimension-major
// ([hd][slot]), so its elements are scattered with a stride of one block.
template <class T>
void CpuBackend::store_token(int32_t il, int64_t phys, int32_t slot, const float* kv, int thread) {
  const int64_t hd = c_.head_dim, nkv = c_.n_head_kv;
  const T* src;
  if constexpr (std::is_same_v<T, float>) {
    src = kv;
  } else {
    _Float16* half = kv_half_.data() + thread * 2 * kv_dim_;
    f32_to_f16(kv, half, 2 * kv_dim_);
    src = half;
  }
  T* kp = reinterpret_cast<T*>(k(il));
  T* vp = reinterpret_cast<T*>(v(il));
  for (int64_t g = 0; g < nkv; ++g) {
    const int64_t base = (phys * nkv + g) * hd * bs_;
    for (int64_t e = 0; e < hd; ++e) kp[base + e * bs_ + slot] = src[g * hd + e];
    std::memcpy(vp + base + slot * hd, src + kv_dim_ + g * hd, hd * sizeof(T));
  }
}

void CpuBackend::layer(int32_t il, int64_t T) {
  const Layer& L = layers_[il];
  const int64_t d = c_.n_embd, ff = c_.n_ff;

  pool_.parallel_for(T, [&](int64_t t, int) {
    rms_norm(x_.data() + t * d, L.attn_norm.data(), xn_.data() + t * d, d, c_.rms_eps);
  });
  in_.prepare(xn_.data(), T, d, d, L.qkv.wants_int8(), pool_);
  L.qkv.run(in_, qkv_.data(), qkv_dim_, pool_);
  pool_.parallel_for(T, [&](int64_t t, int) {
    float* q = qkv_.data() + t * qkv_dim_;
    rope_.apply(q, static_cast<int32_t>(c_.n_head), pos_[t]);
    rope_.apply(q + q_dim_, static_cast<int32_t>(c_.n_head_kv), pos_[t]);
  });
  store_kv(il, T);

  AttentionArgs a;
  a.q = qkv_.data();
  a.ldq = qkv_dim_;
  a.out = attn_.data();
  a.ldo = q_dim_;
  a.k = k(il);
  a.v = v(il);
  a.dtype = kv_dtype_;
  a.n_head = static_cast<int32_t>(c_.n_head);
  a.n_head_kv = static_cast<int32_t>(c_.n_head_kv);
  a.head_dim = static_cast<int32_t>(c_.head_dim);
  a.block_size = bs_;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
  a.seqs = seqs_;
  a.tiles = tiles_;
  a.scratch = att_scratch_.data();
  attention(a, pool_);

  in_.prepare(attn_.data(), T, q_dim_, q_dim_, L.wo.wants_int8(), pool_);
  L.wo.run(in_, tmp_.data(), d, pool_);
  pool_.parallel_for(T, [&](int64_t t, int) {
    add_inplace(x_.data() + t * d, tmp_.data() + t * d, d);
    rms_norm(x_.data() + t * d, L.ffn_norm.data(), xn_.data() + t * d, d, c_.rms_eps);
  });
  in_.prepare(xn_.data(), T, d, d, L.gate_up.wants_int8(), pool_);
  L.gate_up.run(in_, gu_.data(), 2 * ff, pool_);
  pool_.parallel_for(T, [&](int64_t t, int) {
    silu_mul(gu_.data() + t * 2 * ff, gu_.data() + t * 2 * ff + ff, act_.data() + t * ff, ff);
  });
  in_.prepare(act_.data(), T, ff, ff, L.down.wants_int8(), pool_);
  L.down.run(in_, tmp_.data(), d, pool_);
  pool_.parallel_for(T, [&](int64_t t, int) { add_inplace(x_.data() + t * d, tmp_.data() + t * d, d); });
}

void CpuBackend::output(const Batch& batch, float* logits) {
  const int64_t d = c_.n_embd;
  int64_t n_out = 0;
  for (const AttentionSeq& s : seqs_) {
    if (!batch.seqs[&s - seqs_.data()].want_logits) continue;
    const int64_t last = s.first_token + s.n_tokens - 1;
    rms_norm(x_.data() + last * d, output_norm_.data(), out_rows_.data() + n_out * d, d, c_.rms_eps);
    ++n_out;
  }
  if (n_out == 0) return;
  in_.prepare(out_rows_.data(), n_out, d, d, lm_head_.wants_int8(), pool_);
  lm_head_.run(in_, logits, c_.n_vocab, pool_);
}

std::expected<void, std::string> CpuBackend::forward(const Batch& batch, float* logits) {
  if (auto ok = plan(batch); !ok) return ok;
  const int64_t T = batch.n_tokens();
  embed(T);
  for (int32_t il = 0; il < c_.n_layer; ++il) layer(il, T);
  output(batch, logits);
  return {};
}

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const model::GgufFile& file, const BackendConfig& config) {
  return std::make_unique<CpuBackend>(file, config);
}

}  // namespace llmd::engine::cpu
