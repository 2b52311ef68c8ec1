#include "engine/generator.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace llmd::engine {

Generator::Generator(Backend& backend)
    : backend_(backend), blocks_(backend.n_blocks()), logits_(backend.config().n_vocab) {
  table_.reserve(backend.n_blocks());
  batch_.seqs.reserve(1);
}

Generator::~Generator() {
  reset();
}

void Generator::reset() {
  for (int32_t b : table_) blocks_.release(b);
  table_.clear();
  n_past_ = 0;
}

void Generator::ensure_blocks(int32_t n_positions) {
  const int32_t need = (n_positions + backend_.block_size() - 1) / backend_.block_size();
  while (static_cast<int32_t>(table_.size()) < need) {
    auto b = blocks_.allocate();
    if (!b) fail("the KV cache is full ({} blocks of {} tokens)", backend_.n_blocks(), backend_.block_size());
    table_.push_back(*b);
  }
}

const float* Generator::feed(std::span<const int32_t> tokens) {
  if (n_past_ + static_cast<int64_t>(tokens.size()) > backend_.max_seq_len())
    fail("{} tokens exceed the maximum sequence length {}", n_past_ + tokens.size(), backend_.max_seq_len());
  const size_t step = static_cast<size_t>(backend_.max_batch_tokens());
  for (size_t i = 0; i < tokens.size(); i += step) {
    const auto chunk = tokens.subspan(i, std::min(step, tokens.size() - i));
    ensure_blocks(n_past_ + static_cast<int32_t>(chunk.size()));
    batch_.clear();
    batch_.seqs.push_back({chunk, n_past_, table_, i + chunk.size() == tokens.size()});
    if (auto ok = backend_.forward(batch_, logits_.data()); !ok) fail("forward pass failed: {}", ok.error());
    n_past_ += static_cast<int32_t>(chunk.size());
  }
  return logits_.data();
}

std::vector<int32_t> Generator::generate(std::span<const int32_t> prompt, const GenerateOptions& opt,
                                         const std::function<bool(int32_t)>& on_token,
                                         const std::function<bool(int32_t)>& is_eos) {
  if (prompt.empty()) fail("the prompt has no tokens");
  if (auto err = opt.sampling.validate()) fail("{}", *err);
  reset();
  Sampler sampler(opt.sampling, backend_.config().n_vocab);
  sampler.set_prompt(prompt);
  std::vector<int32_t> out;
  out.reserve(opt.max_tokens);
  feed(prompt);
  while (static_cast<int32_t>(out.size()) < opt.max_tokens) {
    const int32_t tok = sampler.sample(logits_.data());
    if (!opt.ignore_eos && is_eos && is_eos(tok)) break;
    sampler.accept(tok);
    out.push_back(tok);
    if (on_token && !on_token(tok)) break;
    if (static_cast<int32_t>(out.size()) == opt.max_tokens || n_past_ >= backend_.max_seq_len()) break;
    const int32_t one[] = {tok};
    feed(one);
  }
  return out;
}

}  // namespace llmd::engine
