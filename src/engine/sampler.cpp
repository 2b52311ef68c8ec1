#include "engine/sampler.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cmath>
#include <limits>

#include "common/error.hpp"
#include "engine/cpu/ops.hpp"

namespace llmd::engine {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Descending logit, then ascending id: a strict total order (NaN is mapped to -inf before any
// comparison), so top-k / top-p cuts and greedy agree on ties and every run is reproducible.
struct Better {
  template <class C>
  bool operator()(const C& a, const C& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
};

// Top-k up to this size selects with a heap while scanning; larger k uses nth_element.
constexpr int32_t kHeapTopKMax = 1024;
// Top-p sorts a candidate list this short outright.
constexpr size_t kSortAllMax = 2048;
// Top-p buckets: 1/16 nat wide, covering 32 nats below the top logit (a weight ratio of 1e-14).
constexpr size_t kBuckets = 512;
constexpr float kBucketsPerNat = 16.0f;
// Growth step of top-p's fallback sort of the tail.
constexpr size_t kTopPChunk = 64;

// 53 random bits -> [0, 1). Written out rather than std::uniform_real_distribution, whose output
// is implementation-defined, so a seed gives the same tokens with every standard library.
double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

// A seed for a request that gave none: distinct per sampler, without a std::random_device read
// (a system call) per request. One device read seeds the process's sequence.
uint64_t fresh_seed() {
  static std::atomic<uint64_t> next = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }();
  uint64_t z = next.fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed);  // splitmix64
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The draw sums weights in blocks of this many (vectorised), then walks one block.
constexpr size_t kDrawBlock = 64;

// "NAME must be RULE, got VALUE" with the shortest round-trip spelling of the value.
template <class T>
std::string bad(const char* name, const char* rule, T value) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(name) + " must be " + rule + ", got " + std::string(buf, r.ptr);
}

}  // namespace

std::optional<std::string> SamplingParams::validate() const {
  // Written as !(x in range) so NaN fails every check.
  if (!(temperature >= 0.0f) || std::isinf(temperature))
    return bad("temperature", "a finite number >= 0", temperature);
  if (top_k < -1) return bad("top_k", "-1 or 0 (disabled) or at least 1", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f)) return bad("top_p", "in (0, 1]", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return bad("min_p", "in [0, 1]", min_p);
  if (!(repetition_penalty > 0.0f) || std::isinf(repetition_penalty))
    return bad("repetition_penalty", "a finite number > 0", repetition_penalty);
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    return bad("frequency_penalty", "in [-2, 2]", frequency_penalty);
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f))
    return bad("presence_penalty", "in [-2, 2]", presence_penalty);
  return std::nullopt;
}

Sampler::Sampler(const SamplingParams& p, int64_t n_vocab) : params_(p), n_vocab_(n_vocab) {
  if (auto err = p.validate()) throw Error("invalid sampling parameters: " + *err);
  if (n_vocab <= 0 || n_vocab > std::numeric_limits<int32_t>::max())
    throw Error("invalid vocabulary size " + std::to_string(n_vocab) + " for the sampler");
  rng_.seed(p.seed ? *p.seed : fresh_seed());
  const auto n = static_cast<size_t>(n_vocab);
  if (p.has_penalties()) {
    in_prompt_.assign(n, 0);
    out_count_.assign(n, 0);
    seen_.reserve(n);  // so accept() never allocates
  }
}

void Sampler::set_prompt(std::span<const int32_t> ids) {
  if (!params_.has_penalties()) return;
  // Drop the previous prompt but keep ids that were generated.
  std::erase_if(seen_, [&](int32_t id) {
    in_prompt_[id] = 0;
    return out_count_[id] == 0;
  });
  for (int32_t id : ids) {
    if (id < 0 || id >= n_vocab_ || in_prompt_[id]) continue;  // out of range: nothing to penalize
    in_prompt_[id] = 1;
    if (out_count_[id] == 0) seen_.push_back(id);
  }
}

void Sampler::accept(int32_t token) {
  if (!params_.has_penalties() || token < 0 || token >= n_vocab_) return;
  if (out_count_[token] == 0 && !in_prompt_[token]) seen_.push_back(token);
  ++out_count_[token];
}

void Sampler::reset_history() {
  for (int32_t id : seen_) {
    in_prompt_[id] = 0;
    out_count_[id] = 0;
  }
  seen_.clear();
}

void Sampler::apply_penalties(float* logits) const {
  const float rep = params_.repetition_penalty;
  const float freq = params_.frequency_penalty;
  const float pres = params_.presence_penalty;
  for (int32_t id : seen_) {
    // llama.cpp's penalties sampler: every seen token gets the repetition penalty (dividing a
    // positive logit, multiplying a non-positive one, so it always lowers the odds), then
    // count * frequency + [count > 0] * presence is subtracted. vLLM counts only generated tokens
    // for the last two, hence the separate prompt mask.
    float& l = logits[id];
    l = l <= 0.0f ? l * rep : l / rep;
    const int32_t c = out_count_[id];
    l -= static_cast<float>(c) * freq + static_cast<float>(c > 0) * pres;
  }
}

int32_t Sampler::sample(float* logits) {
  last_logits_ = logits;
  greedy_prepared_ = false;
  if (params_.has_penalties()) apply_penalties(logits);
  greedy_last_ = params_.greedy();
  return greedy_last_ ? sample_greedy(logits) : sample_random(logits);
}

int32_t Sampler::sample_greedy(const float* logits) {
  // Two passes so the first vectorizes: per-lane maxima (a NaN never wins a '<' test), then the
  // first index holding the maximum, which gives the lowest id on ties.
  constexpr int64_t kLanes = 16;
  float lanes[kLanes];
  std::fill(lanes, lanes + kLanes, kNegInf);
  int64_t i = 0;
  for (; i + kLanes <= n_vocab_; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] = lanes[j] < logits[i + j] ? logits[i + j] : lanes[j];
  float best = kNegInf;
  for (float v : lanes) best = best < v ? v : best;
  for (; i < n_vocab_; ++i) best = best < logits[i] ? logits[i] : best;
  for (int64_t k = 0; k < n_vocab_; ++k)
    if (logits[k] == best) return static_cast<int32_t>(k);
  return 0;  // every logit is NaN
}

void Sampler::ensure_scratch() {
  // Allocated at the first draw that needs them: a greedy request never does.
  const auto n = static_cast<size_t>(n_vocab_);
  if (cand_.size() == n) return;
  cand_.resize(n);
  weight_.resize(n);
  block_sum_.resize((n + kDrawBlock - 1) / kDrawBlock);
}

int32_t Sampler::sample_random(float* logits) {
  ensure_scratch();
  const float t = params_.temperature;
  const int32_t k = params_.top_k;
  const bool top_k = k > 0 && k < n_vocab_;
  float* w = weight_.data();
  if (!top_k && params_.top_p >= 1.0f && params_.min_p <= 0.0f) {
    // No filter: the candidates are the vocabulary in id order, so the draw works on one
    // contiguous buffer (vectorised) and the candidate list is only built if logprobs ask for it.
    float lanes[16];
    std::fill(lanes, lanes + 16, kNegInf);
    int64_t i = 0;
    for (; i + 16 <= n_vocab_; i += 16)
      for (int64_t j = 0; j < 16; ++j) {
        const float l = logits[i + j] / t;
        w[i + j] = l == l ? l : kNegInf;
        lanes[j] = lanes[j] < w[i + j] ? w[i + j] : lanes[j];
      }
    for (; i < n_vocab_; ++i) {
      const float l = logits[i] / t;
      w[i] = l == l ? l : kNegInf;
      lanes[0] = lanes[0] < w[i] ? w[i] : lanes[0];
    }
    float max_l = kNegInf;
    for (const float v : lanes) max_l = max_l < v ? v : max_l;
    n_cand_ = static_cast<size_t>(n_vocab_);
    cand_ready_ = false;
    if (!std::isfinite(max_l)) {  // as below: the best one, the lowest id on ties
      log_norm_ = max_l;
      return static_cast<int32_t>(std::find(w, w + n_vocab_, max_l) - w);
    }
    return static_cast<int32_t>(draw(max_l));  // the index is the id
  }

  // Division, as llama.cpp's temperature sampler does; NaN becomes -inf so the candidate order is
  // a strict total order (std::sort with NaN is undefined behaviour).
  auto scaled = [&](int64_t i) {
    const float l = logits[i] / t;
    return std::isnan(l) ? kNegInf : l;
  };
  sorted_ = false;
  cand_ready_ = true;
  if (top_k && k <= kHeapTopKMax) {
    top_k_heap(k, scaled);
  } else {
    for (int64_t i = 0; i < n_vocab_; ++i) cand_[i] = {static_cast<int32_t>(i), scaled(i), 0.0f};
    n_cand_ = static_cast<size_t>(n_vocab_);
    if (top_k) {
      // nth_element is O(n); the k survivors stay unordered until something needs the order.
      std::nth_element(cand_.begin(), cand_.begin() + k, cand_.begin() + n_cand_, Better{});
      n_cand_ = static_cast<size_t>(k);
    }
  }
  if (params_.top_p < 1.0f) top_p(params_.top_p);
  if (params_.min_p > 0.0f) min_p(params_.min_p);

  float max_l = kNegInf;
  for (size_t i = 0; i < n_cand_; ++i) max_l = std::max(max_l, cand_[i].logit);
  if (!std::isfinite(max_l)) {
    // All -inf (nothing can be drawn) or some +inf (infinitely more likely than the rest): take
    // the best one rather than turning inf - inf into NaN weights.
    const auto it = std::min_element(cand_.begin(), cand_.begin() + n_cand_, Better{});
    log_norm_ = max_l;
    return it->id;
  }
  for (size_t i = 0; i < n_cand_; ++i) w[i] = cand_[i].logit;
  return cand_[draw(max_l)].id;
}

size_t Sampler::draw(float max_l) {
  // weight_[0, n_cand_) holds the candidates' logits; they become exp(logit - max) in place, so
  // the exp and the sums vectorise; summed per block in float lanes, the blocks in double.
  const size_t n = n_cand_;
  float* w = weight_.data();
  cpu::exp_shifted(w, max_l, static_cast<int64_t>(n));
  const size_t n_blocks = (n + kDrawBlock - 1) / kDrawBlock;
  double sum = 0.0;
  for (size_t b = 0; b < n_blocks; ++b) {
    const size_t lo = b * kDrawBlock, hi = std::min(n, lo + kDrawBlock);
    float lanes[8] = {};
    size_t i = lo;
    for (; i + 8 <= hi; i += 8)
      for (size_t j = 0; j < 8; ++j) lanes[j] += w[i + j];
    float s = 0.0f;
    for (; i < hi; ++i) s += w[i];
    for (const float l : lanes) s += l;
    block_sum_[b] = s;
    sum += s;
  }
  log_norm_ = max_l + static_cast<float>(std::log(sum));

  // Inverse CDF over the unnormalized weights: exact, and no normalizing pass is needed.
  const double target = uniform01(rng_) * sum;
  double cum = 0.0;
  for (size_t b = 0; b < n_blocks; ++b) {
    if (target >= cum + block_sum_[b]) {
      cum += block_sum_[b];
      continue;
    }
    const size_t hi = std::min(n, (b + 1) * kDrawBlock);
    for (size_t i = b * kDrawBlock; i < hi; ++i) {
      cum += w[i];
      if (target < cum) return i;
    }
    break;  // rounding inside the block: fall through to the last weighted candidate
  }
  for (size_t i = n; i-- > 0;)
    if (w[i] > 0.0f) return i;
  return 0;
}

template <class Scaled>
void Sampler::top_k_heap(int32_t k, Scaled scaled) {
  // One pass over the logits with a heap of the k best so far, worst on top: nearly every token
  // costs one comparison, and the other n - k candidates are never written.
  const auto kk = static_cast<size_t>(k);
  const auto first = cand_.begin();
  for (size_t i = 0; i < kk; ++i) cand_[i] = {static_cast<int32_t>(i), scaled(static_cast<int64_t>(i)), 0.0f};
  std::make_heap(first, first + kk, Better{});
  for (int64_t i = k; i < n_vocab_; ++i) {
    const Candidate c{static_cast<int32_t>(i), scaled(i), 0.0f};
    if (!Better{}(c, cand_[0])) continue;  // ids only grow, so a tie with the worst loses
    std::pop_heap(first, first + kk, Better{});
    cand_[kk - 1] = c;
    std::push_heap(first, first + kk, Better{});
  }
  n_cand_ = kk;
}

void Sampler::top_p(float p) {
  // llama.cpp: keep the smallest prefix (by descending probability, at least one token) whose
  // cumulative probability reaches p. Only that prefix needs sorting. A short list is sorted
  // outright; a long one is bucketed by logit while its weights are summed (one O(n) pass), the
  // buckets that reach p are partitioned to the front and only they are sorted. So a 128k vocab
  // costs two linear passes plus a sort of roughly the kept tokens, never a full sort.
  const size_t n = n_cand_;
  const auto first = cand_.begin();
  if (!sorted_ && n <= kSortAllMax) {
    std::sort(first, first + n, Better{});
    sorted_ = true;
  }
  float max_l = kNegInf;
  for (size_t i = 0; i < n; ++i) max_l = std::max(max_l, cand_[i].logit);
  if (!std::isfinite(max_l)) return;  // nothing to weigh; the draw handles it

  // Bucket b holds logits in (max - (b+1)/kBucketsPerNat, max - b/kBucketsPerNat]; the last one
  // also everything lower. Equal logits share a bucket and higher logits never sit in a later
  // bucket, so the front buckets are exactly a prefix of the sorted order.
  auto bucket_of = [&](float l) {
    const float d = (max_l - l) * kBucketsPerNat;
    return d < static_cast<float>(kBuckets - 1) ? static_cast<size_t>(d) : kBuckets - 1;
  };
  std::array<double, kBuckets> bucket_sum{};
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    cand_[i].p = std::exp(cand_[i].logit - max_l);
    sum += cand_[i].p;
    if (!sorted_) bucket_sum[bucket_of(cand_[i].logit)] += cand_[i].p;
  }
  const double target = static_cast<double>(p) * sum;

  size_t sorted_end = n;
  if (!sorted_) {
    size_t last = 0;
    for (double cum = bucket_sum[0]; cum < target && last + 1 < kBuckets;) cum += bucket_sum[++last];
    if (last + 1 < kBuckets) {
      const auto mid =
          std::partition(first, first + n, [&](const Candidate& c) { return bucket_of(c.logit) <= last; });
      sorted_end = static_cast<size_t>(mid - first);
    }
    std::sort(first, first + sorted_end, Better{});
  }

  // Rounding can leave the sorted front a hair short of p; then the unsorted tail is sorted in
  // growing chunks cut off with nth_element until p is reached.
  size_t chunk = kTopPChunk;
  double cum = 0.0;
  size_t keep = n;
  for (size_t i = 0; i < n; ++i) {
    if (i == sorted_end) {
      const size_t end = std::min(n, sorted_end + chunk);
      if (end < n) std::nth_element(first + sorted_end, first + end, first + n, Better{});
      std::sort(first + sorted_end, first + end, Better{});
      sorted_end = end;
      chunk *= 2;
    }
    cum += cand_[i].p;
    if (cum >= target) {
      keep = i + 1;
      break;
    }
  }
  n_cand_ = keep;
  sorted_ = true;
}

void Sampler::min_p(float p) {
  // llama.cpp: keep tokens whose probability is at least p times the top one, i.e. whose logit is
  // at least max + log(p). The compaction keeps the order, so a sorted list stays sorted.
  float max_l = kNegInf;
  for (size_t i = 0; i < n_cand_; ++i) max_l = std::max(max_l, cand_[i].logit);
  if (!std::isfinite(max_l)) return;
  const float min_l = max_l + std::log(p);
  size_t j = 0;
  for (size_t i = 0; i < n_cand_; ++i)
    if (cand_[i].logit >= min_l) cand_[j++] = cand_[i];
  n_cand_ = j;  // >= 1: the max itself always passes
}

void Sampler::build_full_candidates(float t) {
  ensure_scratch();
  for (int64_t i = 0; i < n_vocab_; ++i) {
    const float l = last_logits_[i] / t;
    cand_[i] = {static_cast<int32_t>(i), std::isnan(l) ? kNegInf : l, 0.0f};
  }
  n_cand_ = static_cast<size_t>(n_vocab_);
  sorted_ = false;
  cand_ready_ = true;
}

void Sampler::prepare_greedy_logprobs() {
  if (greedy_prepared_) return;
  build_full_candidates(1.0f);
  float max_l = kNegInf;
  for (size_t i = 0; i < n_cand_; ++i) max_l = std::max(max_l, cand_[i].logit);
  if (std::isfinite(max_l)) {
    double sum = 0.0;
    for (size_t i = 0; i < n_cand_; ++i) sum += std::exp(cand_[i].logit - max_l);
    log_norm_ = max_l + static_cast<float>(std::log(sum));
  } else {
    log_norm_ = max_l;
  }
  greedy_prepared_ = true;
}

float Sampler::logprob(int32_t token) {
  if (token < 0 || token >= n_vocab_ || last_logits_ == nullptr) return kNegInf;
  if (greedy_last_ || !cand_ready_) {  // the whole vocabulary: read the token's logit directly
    if (greedy_last_) prepare_greedy_logprobs();
    const float l = last_logits_[token] / (greedy_last_ ? 1.0f : params_.temperature);
    return std::isnan(l) ? kNegInf : l - log_norm_;
  }
  for (size_t i = 0; i < n_cand_; ++i)
    if (cand_[i].id == token) return cand_[i].logit - log_norm_;
  return kNegInf;
}

size_t Sampler::top_logprobs(std::span<TokenLogprob> out) {
  if (last_logits_ == nullptr) return 0;
  if (greedy_last_) prepare_greedy_logprobs();
  if (!cand_ready_) build_full_candidates(params_.temperature);
  const size_t m = std::min(out.size(), n_cand_);
  if (!sorted_) std::partial_sort(cand_.begin(), cand_.begin() + m, cand_.begin() + n_cand_, Better{});
  for (size_t i = 0; i < m; ++i) out[i] = {cand_[i].id, cand_[i].logit - log_norm_};
  return m;
}

}  // namespace llmd::engine
