#include "engine/sampler.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "common/error.hpp"

namespace llmd::engine {
namespace {

SamplingParams greedy_params() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

SamplingParams seeded(uint64_t seed) {
  SamplingParams p;
  p.seed = seed;
  return p;
}

std::vector<float> softmax(const std::vector<float>& l) {
  const float m = *std::max_element(l.begin(), l.end());
  std::vector<float> p(l.size());
  double s = 0;
  for (size_t i = 0; i < l.size(); ++i) s += p[i] = std::exp(l[i] - m);
  for (float& x : p) x = static_cast<float>(x / s);
  return p;
}

// Draws n tokens, each from a fresh copy of `logits` (sample() may modify its input).
std::vector<int> histogram(Sampler& s, const std::vector<float>& logits, int n) {
  std::vector<int> h(logits.size(), 0);
  std::vector<float> buf;
  for (int i = 0; i < n; ++i) {
    buf = logits;
    ++h[s.sample(buf.data())];
  }
  return h;
}

TEST(Sampler, GreedyIsArgmax) {
  Sampler s(greedy_params(), 6);
  std::vector<float> l = {0.1f, -3.0f, 2.5f, 2.4f, -10.0f, 1.0f};
  EXPECT_EQ(s.sample(l.data()), 2);
  l = {-5.0f, -4.0f, -3.0f, -2.0f, -1.5f, -1.6f};
  EXPECT_EQ(s.sample(l.data()), 4);
}

TEST(Sampler, GreedyTiesPickLowestId) {
  Sampler s(greedy_params(), 5);
  std::vector<float> l = {1.0f, 3.0f, 0.0f, 3.0f, 3.0f};
  EXPECT_EQ(s.sample(l.data()), 1);
  std::vector<float> all_equal(5, 0.5f);
  EXPECT_EQ(s.sample(all_equal.data()), 0);
}

TEST(Sampler, GreedyIgnoresNaN) {
  Sampler s(greedy_params(), 3);
  std::vector<float> l = {NAN, 1.0f, 2.0f};
  EXPECT_EQ(s.sample(l.data()), 2);
}

TEST(Sampler, TinyTemperatureIsGreedy) {
  SamplingParams p = seeded(1);
  p.temperature = 1e-7f;  // below kGreedyTemperature: logits / T would overflow
  Sampler s(p, 4);
  for (int i = 0; i < 50; ++i) {
    std::vector<float> l = {1.0f, 1.0001f, 0.9f, 1.0001f};
    EXPECT_EQ(s.sample(l.data()), 1);
  }
}

TEST(Sampler, SameSeedSameSequenceDifferentSeedDiffers) {
  const std::vector<float> logits(64, 0.0f);  // uniform: the sequence is all RNG
  auto run = [&](uint64_t seed) {
    Sampler s(seeded(seed), 64);
    std::vector<int32_t> out;
    std::vector<float> buf;
    for (int i = 0; i < 200; ++i) {
      buf = logits;
      out.push_back(s.sample(buf.data()));
    }
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(Sampler, SeedReproducibleWithAllFilters) {
  SamplingParams p = seeded(7);
  p.temperature = 0.8f;
  p.top_k = 50;
  p.top_p = 0.9f;
  p.min_p = 0.01f;
  p.repetition_penalty = 1.1f;
  p.frequency_penalty = 0.3f;
  p.presence_penalty = 0.2f;
  std::mt19937 gen(5);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> logits(1000);
  for (float& x : logits) x = nd(gen);
  auto run = [&] {
    Sampler s(p, 1000);
    const std::vector<int32_t> prompt = {1, 2, 3};
    s.set_prompt(prompt);
    std::vector<int32_t> out;
    std::vector<float> buf;
    for (int i = 0; i < 100; ++i) {
      buf = logits;
      out.push_back(s.sample(buf.data()));
      s.accept(out.back());
    }
    return out;
  };
  EXPECT_EQ(run(), run());
}

TEST(Sampler, UnseededSamplerDrawsValidTokens) {
  Sampler s(SamplingParams{}, 8);
  const std::vector<float> logits = {0, 1, 2, 3, 4, 5, 6, 7};
  const auto h = histogram(s, logits, 100);
  EXPECT_EQ(std::accumulate(h.begin(), h.end(), 0), 100);
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p = seeded(3);
  p.top_k = 1;
  Sampler s(p, 6);
  Sampler g(greedy_params(), 6);
  const std::vector<float> logits = {0.5f, 2.0f, 1.9f, 2.0f, -1.0f, 1.5f};
  std::vector<float> gl = logits;
  const int32_t want = g.sample(gl.data());
  EXPECT_EQ(want, 1);
  const auto h = histogram(s, logits, 500);
  EXPECT_EQ(h[want], 500);
}

TEST(Sampler, TopKKeepsKBestRenormalized) {
  SamplingParams p = seeded(11);
  p.top_k = 2;
  Sampler s(p, 4);
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f};
  const int n = 20000;
  const auto h = histogram(s, logits, n);
  EXPECT_EQ(h[1], 0);
  EXPECT_EQ(h[3], 0);
  const double p2 = 1.0 / (1.0 + std::exp(-1.0));  // e^2 / (e^2 + e^1)
  EXPECT_NEAR(h[2] / double(n), p2, 0.015);
}

TEST(Sampler, TinyTopPIsGreedy) {
  SamplingParams p = seeded(9);
  p.top_p = 1e-6f;
  Sampler s(p, 5);
  const std::vector<float> logits = {0.0f, 0.3f, 0.2f, 0.3f, 0.1f};  // tie at the top: lowest id
  const auto h = histogram(s, logits, 500);
  EXPECT_EQ(h[1], 500);
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingP) {
  SamplingParams p = seeded(21);
  p.top_p = 0.75f;
  Sampler s(p, 4);
  // probabilities 0.5, 0.3, 0.15, 0.05: the first two reach 0.75.
  const std::vector<float> logits = {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  const int n = 20000;
  const auto h = histogram(s, logits, n);
  EXPECT_EQ(h[0], 0);
  EXPECT_EQ(h[2], 0);
  EXPECT_NEAR(h[1] / double(n), 0.5 / 0.8, 0.015);
  EXPECT_NEAR(h[3] / double(n), 0.3 / 0.8, 0.015);
}

// Large vocabularies take the heap / nth_element / bucketed paths; what they keep must equal a
// full sort's prefix, ties included (`quantum` > 0 rounds the logits to create many ties).
std::vector<float> random_logits(int64_t n, float sigma, float quantum) {
  std::mt19937 gen(1234);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> logits(n);
  for (float& x : logits) x = quantum > 0 ? std::round(nd(gen) / quantum) * quantum : nd(gen);
  return logits;
}

std::vector<int32_t> reference_order(const std::vector<float>& logits) {
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  return order;
}

// How many of the first `n` tokens of `order` top-p keeps, with the sampler's arithmetic (float
// weights, double sums).
size_t reference_top_p(const std::vector<float>& logits, const std::vector<int32_t>& order, size_t n,
                       float top_p) {
  const float m = logits[order[0]];
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += std::exp(logits[order[i]] - m);
  double cum = 0;
  size_t keep = 0;
  while (keep < n) {
    cum += std::exp(logits[order[keep++]] - m);
    if (cum >= static_cast<double>(top_p) * sum) break;
  }
  return keep;
}

void expect_kept_prefix(Sampler& s, const std::vector<int32_t>& order, size_t keep, const char* what) {
  std::vector<TokenLogprob> got(order.size());
  ASSERT_EQ(s.top_logprobs(got), keep) << what;
  for (size_t i = 0; i < keep; ++i) ASSERT_EQ(got[i].id, order[i]) << what << " rank " << i;
}

TEST(Sampler, TopKLargeVocabMatchesFullSort) {
  const int64_t n = 50000;
  for (float quantum : {0.0f, 0.25f}) {
    const auto logits = random_logits(n, 2.0f, quantum);
    const auto order = reference_order(logits);
    for (int32_t k : {1, 100, 1024, 1025, 5000}) {
      SamplingParams p = seeded(5);
      p.top_k = k;
      Sampler s(p, n);
      std::vector<float> buf = logits;
      s.sample(buf.data());
      expect_kept_prefix(s, order, static_cast<size_t>(k), ("top_k " + std::to_string(k)).c_str());
    }
  }
}

TEST(Sampler, TopPLargeVocabMatchesFullSort) {
  const int64_t n = 50000;
  for (float quantum : {0.0f, 0.25f}) {
    const auto logits = random_logits(n, 2.0f, quantum);
    const auto order = reference_order(logits);
    for (float top_p : {0.3f, 0.9f, 0.99f}) {
      SamplingParams p = seeded(5);
      p.top_p = top_p;
      Sampler s(p, n);
      std::vector<float> buf = logits;
      s.sample(buf.data());
      const size_t keep = reference_top_p(logits, order, n, top_p);
      ASSERT_GT(keep, 64u) << "the test should keep more than a trivially small set";
      expect_kept_prefix(s, order, keep, ("top_p " + std::to_string(top_p)).c_str());
    }
    // top-k first: 1024 takes the heap path and is sorted outright, 5000 uses nth_element and buckets.
    for (int32_t k : {1024, 5000}) {
      SamplingParams p = seeded(5);
      p.top_k = k;
      p.top_p = 0.9f;
      Sampler s(p, n);
      std::vector<float> buf = logits;
      s.sample(buf.data());
      const size_t keep = reference_top_p(logits, order, static_cast<size_t>(k), 0.9f);
      expect_kept_prefix(s, order, keep, ("top_k+top_p " + std::to_string(k)).c_str());
    }
  }
}

TEST(Sampler, MinPFiltersRelativeToTop) {
  SamplingParams p = seeded(17);
  p.min_p = 0.3f;
  Sampler s(p, 5);
  // probabilities proportional to 10, 4, 2.9, 3.1, 1: threshold 0.3 * 10 = 3 keeps ids 0, 1, 3.
  const std::vector<float> logits = {std::log(10.0f), std::log(4.0f), std::log(2.9f), std::log(3.1f), 0.0f};
  const int n = 20000;
  const auto h = histogram(s, logits, n);
  EXPECT_EQ(h[2], 0);
  EXPECT_EQ(h[4], 0);
  EXPECT_NEAR(h[0] / double(n), 10.0 / 17.1, 0.015);
  EXPECT_NEAR(h[1] / double(n), 4.0 / 17.1, 0.015);
  EXPECT_NEAR(h[3] / double(n), 3.1 / 17.1, 0.015);
}

TEST(Sampler, DrawsFollowSoftmax) {
  Sampler s(seeded(2024), 4);
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f};
  const int n = 20000;
  const auto h = histogram(s, logits, n);
  const auto want = softmax(logits);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(h[i] / double(n), want[i], 0.015) << "token " << i;
}

// Unfiltered sampling over a vocabulary of several draw blocks (64 weights each) with tokens
// masked to -inf (never drawn) and NaN: frequencies follow the softmax, and logprobs (read from
// the logits, the candidate list built only when top_logprobs asks) are its log.
TEST(Sampler, UnfilteredLargeVocabFollowsSoftmaxAndNeverDrawsMasked) {
  SamplingParams p = seeded(99);
  p.temperature = 0.7f;
  constexpr int kVocab = 300;
  std::vector<float> logits(kVocab, -INFINITY);
  logits[5] = 1.0f, logits[70] = 2.0f, logits[200] = 0.5f, logits[299] = 1.5f;
  logits[150] = NAN;
  Sampler s(p, kVocab);
  const int n = 40000;
  const auto h = histogram(s, logits, n);
  std::vector<float> scaled(kVocab, -INFINITY);
  for (const int i : {5, 70, 200, 299}) scaled[i] = logits[i] / 0.7f;
  const auto want = softmax(scaled);
  int drawn = 0;
  for (int i = 0; i < kVocab; ++i) {
    drawn += h[i];
    if (want[i] == 0) {
      EXPECT_EQ(h[i], 0) << "masked token " << i << " drawn";
    } else {
      EXPECT_NEAR(h[i] / double(n), want[i], 0.012) << "token " << i;
    }
  }
  EXPECT_EQ(drawn, n);

  std::vector<float> l = logits;
  s.sample(l.data());
  for (const int i : {5, 70, 200, 299}) EXPECT_NEAR(s.logprob(i), std::log(want[i]), 1e-4) << i;
  EXPECT_EQ(s.logprob(0), -INFINITY);
  EXPECT_EQ(s.logprob(150), -INFINITY);
  std::array<TokenLogprob, 3> top{};
  ASSERT_EQ(s.top_logprobs(top), 3u);
  EXPECT_EQ(top[0].id, 70);
  EXPECT_EQ(top[1].id, 299);
  EXPECT_EQ(top[2].id, 5);
  EXPECT_NEAR(top[0].logprob, std::log(want[70]), 1e-4);
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f};
  for (float t : {0.5f, 2.0f}) {
    SamplingParams p = seeded(77);
    p.temperature = t;
    Sampler s(p, 4);
    const int n = 20000;
    const auto h = histogram(s, logits, n);
    std::vector<float> scaled = logits;
    for (float& x : scaled) x /= t;
    const auto want = softmax(scaled);
    for (size_t i = 0; i < 4; ++i)
      EXPECT_NEAR(h[i] / double(n), want[i], 0.015) << "T " << t << " token " << i;
  }
}

TEST(Sampler, PenaltiesChangeLogitsExactly) {
  SamplingParams p = greedy_params();
  p.repetition_penalty = 1.3f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  Sampler s(p, 8);
  const std::vector<int32_t> prompt = {0, 1, 1};
  s.set_prompt(prompt);
  s.accept(2);
  s.accept(2);
  s.accept(3);
  s.accept(1);
  s.accept(-1);  // out of range: ignored
  s.accept(8);
  std::vector<float> l = {2.0f, -2.0f, 3.0f, -0.5f, 4.0f, -1.0f, 0.0f, 1.0f};
  const std::vector<float> orig = l;
  s.sample(l.data());
  // id 0: prompt only, positive -> divided; no frequency/presence (those count output only).
  EXPECT_FLOAT_EQ(l[0], orig[0] / 1.3f);
  // id 1: prompt (twice, still once) and output once, negative -> multiplied, then 1*f + p.
  EXPECT_FLOAT_EQ(l[1], orig[1] * 1.3f - (1.0f * 0.5f + 0.25f));
  // id 2: output twice, positive.
  EXPECT_FLOAT_EQ(l[2], orig[2] / 1.3f - (2.0f * 0.5f + 0.25f));
  // id 3: output once, negative.
  EXPECT_FLOAT_EQ(l[3], orig[3] * 1.3f - (1.0f * 0.5f + 0.25f));
  for (int id : {4, 5, 6, 7}) EXPECT_EQ(l[id], orig[id]) << "unseen token " << id;
}

TEST(Sampler, PenaltiesSteerGreedy) {
  SamplingParams p = greedy_params();
  p.presence_penalty = 2.0f;
  Sampler s(p, 3);
  std::vector<float> l = {1.0f, 2.0f, 0.5f};
  EXPECT_EQ(s.sample(l.data()), 1);
  s.accept(1);
  l = {1.0f, 2.0f, 0.5f};
  EXPECT_EQ(s.sample(l.data()), 0);  // 2 - 2 = 0 < 1
}

TEST(Sampler, SetPromptReplacesPromptKeepsOutput) {
  SamplingParams p = greedy_params();
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 1.0f;
  Sampler s(p, 4);
  const std::vector<int32_t> first = {0, 1};
  s.set_prompt(first);
  s.accept(1);
  const std::vector<int32_t> second = {2};
  s.set_prompt(second);
  std::vector<float> l = {4.0f, 4.0f, 4.0f, 4.0f};
  s.sample(l.data());
  EXPECT_FLOAT_EQ(l[0], 4.0f);                // no longer in the prompt
  EXPECT_FLOAT_EQ(l[1], 4.0f / 2.0f - 1.0f);  // generated: still penalized
  EXPECT_FLOAT_EQ(l[2], 2.0f);                // new prompt
  EXPECT_FLOAT_EQ(l[3], 4.0f);

  s.reset_history();
  l = {4.0f, 4.0f, 4.0f, 4.0f};
  s.sample(l.data());
  for (float x : l) EXPECT_FLOAT_EQ(x, 4.0f);
}

TEST(Sampler, LogprobsOfFinalDistribution) {
  SamplingParams p = seeded(1);
  p.top_k = 2;
  Sampler s(p, 4);
  std::vector<float> l = {1.0f, 0.0f, 2.0f, -1.0f};
  const int32_t tok = s.sample(l.data());
  EXPECT_TRUE(tok == 0 || tok == 2);
  const double lse = std::log(std::exp(1.0) + std::exp(2.0));
  EXPECT_NEAR(s.logprob(2), 2.0 - lse, 1e-5);
  EXPECT_NEAR(s.logprob(0), 1.0 - lse, 1e-5);
  EXPECT_EQ(s.logprob(1), -INFINITY);
  EXPECT_EQ(s.logprob(3), -INFINITY);
  std::array<TokenLogprob, 3> top{};
  ASSERT_EQ(s.top_logprobs(top), 2u);  // only two candidates survive top-k
  EXPECT_EQ(top[0].id, 2);
  EXPECT_EQ(top[1].id, 0);
  EXPECT_NEAR(top[0].logprob, 2.0 - lse, 1e-5);
}

TEST(Sampler, GreedyLogprobsAreLogSoftmax) {
  Sampler s(greedy_params(), 4);
  std::vector<float> l = {1.0f, 2.0f, 0.5f, 2.0f};
  EXPECT_EQ(s.sample(l.data()), 1);
  const auto want = softmax(l);
  for (int32_t i = 0; i < 4; ++i) EXPECT_NEAR(s.logprob(i), std::log(want[i]), 1e-5);
  std::array<TokenLogprob, 2> top{};
  ASSERT_EQ(s.top_logprobs(top), 2u);
  EXPECT_EQ(top[0].id, 1);  // tie with 3: lower id first
  EXPECT_EQ(top[1].id, 3);
}

TEST(Sampler, AllNegativeInfinityDoesNotCrash) {
  Sampler s(seeded(1), 3);
  std::vector<float> l = {-INFINITY, -INFINITY, -INFINITY};
  const int32_t t = s.sample(l.data());
  EXPECT_GE(t, 0);
  EXPECT_LT(t, 3);
  std::vector<float> l2 = {-INFINITY, NAN, 0.0f};
  EXPECT_EQ(s.sample(l2.data()), 2);
}

TEST(SamplingParams, DefaultsAreOpenAIDefaultsAndValid) {
  SamplingParams p;
  EXPECT_EQ(p.temperature, 1.0f);
  EXPECT_EQ(p.top_k, 0);
  EXPECT_EQ(p.top_p, 1.0f);
  EXPECT_EQ(p.min_p, 0.0f);
  EXPECT_EQ(p.repetition_penalty, 1.0f);
  EXPECT_FALSE(p.seed.has_value());
  EXPECT_FALSE(p.validate().has_value());
  p.top_k = -1;
  EXPECT_FALSE(p.validate().has_value());
}

TEST(SamplingParams, ValidateRejectsBadValues) {
  auto bad = [](auto mutate, const char* field) {
    SamplingParams p;
    mutate(p);
    const auto err = p.validate();
    ASSERT_TRUE(err.has_value()) << field;
    EXPECT_NE(err->find(field), std::string::npos) << *err;
  };
  bad([](SamplingParams& p) { p.temperature = -0.1f; }, "temperature");
  bad([](SamplingParams& p) { p.temperature = NAN; }, "temperature");
  bad([](SamplingParams& p) { p.top_k = -2; }, "top_k");
  bad([](SamplingParams& p) { p.top_p = 0.0f; }, "top_p");
  bad([](SamplingParams& p) { p.top_p = 1.01f; }, "top_p");
  bad([](SamplingParams& p) { p.min_p = -0.01f; }, "min_p");
  bad([](SamplingParams& p) { p.min_p = 1.5f; }, "min_p");
  bad([](SamplingParams& p) { p.repetition_penalty = 0.0f; }, "repetition_penalty");
  bad([](SamplingParams& p) { p.repetition_penalty = -1.0f; }, "repetition_penalty");
  bad([](SamplingParams& p) { p.frequency_penalty = 2.5f; }, "frequency_penalty");
  bad([](SamplingParams& p) { p.frequency_penalty = -2.01f; }, "frequency_penalty");
  bad([](SamplingParams& p) { p.presence_penalty = -3.0f; }, "presence_penalty");

  SamplingParams edge;
  edge.top_p = 1.0f;
  edge.min_p = 1.0f;
  edge.frequency_penalty = -2.0f;
  edge.presence_penalty = 2.0f;
  EXPECT_FALSE(edge.validate().has_value());
}

TEST(SamplingParams, SamplerRejectsInvalidParamsAndVocab) {
  SamplingParams p;
  p.top_p = 0.0f;
  EXPECT_THROW(Sampler(p, 10), llmd::Error);
  EXPECT_THROW(Sampler(SamplingParams{}, 0), llmd::Error);
}

}  // namespace
}  // namespace llmd::engine
