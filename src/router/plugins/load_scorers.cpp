// Scorers of load, as llm-d computes them: queue-scorer (waiting queue, min-max normalised over
// the candidates), kv-cache-utilization-scorer (1 − usage), load-aware-scorer (waiting queue
// against a threshold), active-request-scorer (requests the router has in flight).
#include <algorithm>

#include "router/plugin_registry.hpp"

namespace llmd::router {
namespace {

double waiting(const Endpoint* e) {
  return e->waiting.load(std::memory_order_relaxed);
}

class QueueScorer final : public Scorer {
 public:
  void score(SchedContext&, std::span<Endpoint* const> eps, std::span<double> out) override {
    double lo = 0, hi = 0;
    for (std::size_t i = 0; i < eps.size(); ++i) {
      const double q = waiting(eps[i]);
      lo = i ? std::min(lo, q) : q;
      hi = i ? std::max(hi, q) : q;
    }
    for (std::size_t i = 0; i < eps.size(); ++i) out[i] = hi > lo ? (hi - waiting(eps[i])) / (hi - lo) : 1.0;
  }
};

class KvUtilizationScorer final : public Scorer {
 public:
  void score(SchedContext&, std::span<Endpoint* const> eps, std::span<double> out) override {
    for (std::size_t i = 0; i < eps.size(); ++i)
      out[i] = 1.0 - eps[i]->kv_usage.load(std::memory_order_relaxed);
  }
};

// An idle queue scores 0.5 and a queue at the threshold 0: llm-d keeps the top half for ties
// broken by other scorers.
class LoadAwareScorer final : public Scorer {
 public:
  explicit LoadAwareScorer(double threshold) : threshold_(threshold) {}
  void score(SchedContext&, std::span<Endpoint* const> eps, std::span<double> out) override {
    for (std::size_t i = 0; i < eps.size(); ++i) {
      const double q = waiting(eps[i]);
      out[i] = q <= 0 ? 0.5 : 0.5 * (1.0 - std::min(q, threshold_) / threshold_);
    }
  }

 private:
  double threshold_;
};

class ActiveRequestScorer final : public Scorer {
 public:
  ActiveRequestScorer(int64_t idle, double max_busy) : idle_(idle), max_busy_(max_busy) {}
  void score(SchedContext&, std::span<Endpoint* const> eps, std::span<double> out) override {
    int32_t most = 0;
    for (const Endpoint* e : eps) most = std::max(most, e->active.load(std::memory_order_relaxed));
    for (std::size_t i = 0; i < eps.size(); ++i) {
      const int32_t n = eps[i]->active.load(std::memory_order_relaxed);
      out[i] = n <= idle_ || most == 0 ? 1.0 : static_cast<double>(most - n) / most * max_busy_;
    }
  }

 private:
  int64_t idle_;
  double max_busy_;
};

}  // namespace

std::shared_ptr<Plugin> make_load_scorer(std::string_view type, Params& p, const PluginEnv&) {
  if (type == "queue-scorer") return std::make_shared<QueueScorer>();
  if (type == "kv-cache-utilization-scorer") return std::make_shared<KvUtilizationScorer>();
  if (type == "load-aware-scorer") {
    const int64_t t = p.integer("threshold", 128, std::numeric_limits<int64_t>::min(), 1 << 30);
    return std::make_shared<LoadAwareScorer>(static_cast<double>(t > 0 ? t : 128));  // llm-d: ≤0 → 128
  }
  if (type == "active-request-scorer") {
    const int64_t idle = p.integer("idleThreshold", 0, 0, 1 << 30);
    const double busy = p.number("maxBusyScore", 1.0, 0.0, 1.0);
    p.ignore({"requestTimeout"});  // deprecated in llm-d
    return std::make_shared<ActiveRequestScorer>(idle, busy);
  }
  return nullptr;
}

}  // namespace llmd::router
