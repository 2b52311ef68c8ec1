#pragma once
// A Prometheus metrics registry: counters, gauges and histograms grouped in families that share a
// name, help text and fixed label names, rendered in the text exposition format 0.0.4 that
// Prometheus, vLLM's /metrics and llm-d's scrapers all speak.
//
// Threading: registering families and creating children (`family.with({...})`) take a mutex and
// are meant for set-up; the returned child references stay valid for the registry's lifetime, and
// updating them (inc/set/observe) is lock-free, so the engine thread never waits on a scrape.
// render() may run on any thread at any time.
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmd::metrics {

// vLLM's bucket bounds (vllm/v1/metrics/loggers.py), so dashboards and SLO queries written for
// vLLM read the same buckets from llmd.
inline constexpr double kTtftBuckets[] = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                          0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                          20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
// Time per output token and inter-token latency share these.
inline constexpr double kTpotBuckets[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                          0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
inline constexpr double kE2eBuckets[] = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                         5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                         60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

// vLLM's label names, so llm-d's scrapers that select by them work on llmd.
inline constexpr std::string_view kModelNameLabel = "model_name";
inline constexpr std::string_view kEngineLabel = "engine";

class Counter {
 public:
  // Counters only go up: a negative or NaN `v` is ignored rather than corrupting rate().
  void inc(double v = 1.0) noexcept;
  double value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0.0};
};

class Gauge {
 public:
  void set(double v) noexcept { v_.store(v, std::memory_order_relaxed); }
  void inc(double v = 1.0) noexcept { v_.fetch_add(v, std::memory_order_relaxed); }
  void dec(double v = 1.0) noexcept { v_.fetch_sub(v, std::memory_order_relaxed); }
  double value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0.0};
};

class Histogram {
 public:
  // `bounds` (sorted upper bounds, without +Inf) is owned by the family and outlives this.
  explicit Histogram(std::span<const double> bounds);
  void observe(double v) noexcept;

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;  // == cumulative.back(), so _count always equals the +Inf bucket
  };
  Snapshot snapshot() const;
  std::span<const double> bounds() const { return bounds_; }

 private:
  std::span<const double> bounds_;
  // Per-bucket (not cumulative) counts: one atomic add per observation; +Inf is the last.
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0.0};
};

enum class Type { kCounter, kGauge, kHistogram };

// A named family: one child per distinct tuple of label values, in the order the names were given.
template <class M>
class Family {
 public:
  // Returns the child for these label values, creating it on first use. Throws llmd::Error when
  // the number of values differs from the family's label names. Keep the reference: with() takes
  // a mutex, the child's updates do not.
  M& with(std::initializer_list<std::string_view> values) {
    return with(std::span(values.begin(), values.size()));
  }
  M& with(std::span<const std::string_view> values);
  M& with(const std::vector<std::string>& values);

  const std::string& name() const { return name_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

 private:
  friend class Registry;
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds);
  void render(std::string& out, Type type) const;

  std::string name_;  // as exposed (counters with their _total)
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;  // histograms only
  mutable std::mutex mu_;       // guards the two containers below, not the children's values
  struct Child {
    std::vector<std::string> values;
    std::unique_ptr<M> metric;
  };
  std::deque<Child> children_;                    // creation order
  std::map<std::string, M*, std::less<>> index_;  // key: the values, each length-prefixed
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Each family is registered once. Registering a name again with the same type, label names (and
  // buckets) returns the existing family, so two components can share one; anything else throws
  // llmd::Error, as do invalid metric or label names. Counter names are exposed with one `_total`
  // suffix whether or not `name` has it, as prometheus_client (and so vLLM) does.
  CounterFamily& counter(std::string_view name, std::string_view help,
                         std::vector<std::string> label_names = {});
  GaugeFamily& gauge(std::string_view name, std::string_view help, std::vector<std::string> label_names = {});
  // `bounds`: strictly increasing finite upper bounds; +Inf is added by the registry.
  HistogramFamily& histogram(std::string_view name, std::string_view help, std::span<const double> bounds,
                             std::vector<std::string> label_names = {});
  // An info metric: a gauge whose one child carries the labels and is always 1, like vLLM's
  // `vllm:cache_config_info{block_size="16",num_gpu_blocks="..."} 1`.
  void info(std::string_view name, std::string_view help,
            const std::vector<std::pair<std::string, std::string>>& labels);

  // The whole registry in the text exposition format 0.0.4 (Content-Type below), families in
  // registration order, children in creation order.
  std::string render() const;

 private:
  struct Entry;
  Entry* find_or_null(std::string_view exposed_name, Type type, const std::vector<std::string>& labels,
                      std::span<const double> bounds);

  mutable std::mutex mu_;
  std::deque<std::unique_ptr<Entry>> entries_;
};

inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

// Exposition helpers, public for other writers of the format (and tests).
std::string escape_label_value(std::string_view v);  // \ " and newline
std::string format_value(double v);                  // Go/Python style: 1.0, 0.25, +Inf, NaN
bool valid_metric_name(std::string_view name);       // [a-zA-Z_:][a-zA-Z0-9_:]*
bool valid_label_name(std::string_view name);        // [a-zA-Z_][a-zA-Z0-9_]*, not __reserved

}  // namespace llmd::metrics
