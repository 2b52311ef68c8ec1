// max-score-picker (ties at random), random-picker, weighted-random-picker (A-Res: key U^(1/w)).
// Each ranks every candidate, so the proxy can fall back down the list; maxNumOfEndpoints is how
// many the EPP names.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "router/plugin_registry.hpp"

namespace llmd::router {
namespace {

// Reorders eps (and scores) by descending key.
void order_by(Candidates& eps, std::vector<double>& scores, const std::vector<double>& key) {
  thread_local std::vector<std::size_t> idx;
  thread_local Candidates e2;
  thread_local std::vector<double> s2;
  idx.resize(eps.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return key[a] > key[b]; });
  e2.clear();
  s2.clear();
  for (const std::size_t i : idx) {
    e2.push_back(eps[i]);
    s2.push_back(scores[i]);
  }
  eps.swap(e2);
  scores.swap(s2);
}

void shuffle(SchedContext& ctx, Candidates& eps, std::vector<double>& scores) {
  for (std::size_t i = eps.size(); i > 1; --i) {
    const std::size_t j = std::uniform_int_distribution<std::size_t>(0, i - 1)(ctx.rng);
    std::swap(eps[i - 1], eps[j]);
    std::swap(scores[i - 1], scores[j]);
  }
}

class MaxScorePicker final : public Picker {
 public:
  explicit MaxScorePicker(std::size_t n) : n_(n) {}
  std::size_t pick(SchedContext& ctx, Candidates& eps, std::vector<double>& scores) override {
    shuffle(ctx, eps, scores);  // then a stable sort: equal totals stay in random order
    thread_local std::vector<double> key;
    key.assign(scores.begin(), scores.end());
    order_by(eps, scores, key);
    return n_;
  }

 private:
  std::size_t n_;
};

class RandomPicker final : public Picker {
 public:
  explicit RandomPicker(std::size_t n) : n_(n) {}
  std::size_t pick(SchedContext& ctx, Candidates& eps, std::vector<double>& scores) override {
    shuffle(ctx, eps, scores);
    return n_;
  }

 private:
  std::size_t n_;
};

class WeightedRandomPicker final : public Picker {
 public:
  explicit WeightedRandomPicker(std::size_t n) : n_(n) {}
  std::size_t pick(SchedContext& ctx, Candidates& eps, std::vector<double>& scores) override {
    if (std::all_of(scores.begin(), scores.end(), [](double s) { return s <= 0; })) {
      shuffle(ctx, eps, scores);
      return n_;
    }
    thread_local std::vector<double> key;
    key.resize(eps.size());
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (std::size_t i = 0; i < eps.size(); ++i) {
      const double r = std::max(u(ctx.rng), 1e-10);
      key[i] = scores[i] > 0 ? std::pow(r, 1.0 / scores[i]) : 0.0;
    }
    order_by(eps, scores, key);
    return n_;
  }

 private:
  std::size_t n_;
};

}  // namespace

std::shared_ptr<Plugin> make_picker(std::string_view type, Params& p, const PluginEnv&) {
  const bool picker =
      type == "max-score-picker" || type == "random-picker" || type == "weighted-random-picker";
  if (!picker) return nullptr;
  int64_t n = p.integer("maxNumOfEndpoints", 1, std::numeric_limits<int64_t>::min(), 1 << 16);
  const auto count = static_cast<std::size_t>(n > 0 ? n : 1);  // llm-d: ≤0 → 1
  if (type == "max-score-picker") return std::make_shared<MaxScorePicker>(count);
  if (type == "random-picker") return std::make_shared<RandomPicker>(count);
  return std::make_shared<WeightedRandomPicker>(count);
}

}  // namespace llmd::router
