#include "common/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"

namespace llmd::metrics {

void Counter::inc(double v) noexcept {
  if (!(v >= 0.0)) return;  // also rejects NaN
  v_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds), counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds.size() + 1)) {}

void Histogram::observe(double v) noexcept {
  // `le` is inclusive: v lands in the first bucket whose bound is >= v. NaN goes to +Inf (a
  // binary search would put it first), so the bucket counts still add up to _count.
  const size_t i =
      std::isnan(v)
          ? bounds_.size()
          : static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t acc = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    acc += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = acc;
  }
  s.count = acc;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

namespace {

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// Each value length-prefixed, so ("a,b") and ("a", "b") differ. Built in a per-thread buffer and
// looked up as a view: a with() on the data path (the router's per-decision counters) allocates
// nothing once the child exists.
std::string_view label_key(std::span<const std::string_view> values) {
  thread_local std::string key;
  key.clear();
  for (std::string_view v : values) {
    const fmt::format_int n(v.size());
    key.append(n.data(), n.size()).append(":").append(v);
  }
  return key;
}

// `{a="x",b="y"` without the closing brace, so a histogram can append its `le`; empty for no labels.
void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<std::string>& values) {
  for (size_t i = 0; i < names.size(); ++i) {
    out += i == 0 ? '{' : ',';
    out += names[i];
    out += "=\"";
    out += escape_label_value(values[i]);
    out += '"';
  }
}

void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   const std::vector<std::string>& names, const std::vector<std::string>& values, double v) {
  out += name;
  out += suffix;
  append_labels(out, names, values);
  if (!names.empty()) out += '}';
  out += ' ';
  out += format_value(v);
  out += '\n';
}

std::string_view type_name(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Shortest round-trip digits, with a ".0" on integral values as Python's repr (and so vLLM's
  // `le` labels) writes them: le="1.0" from llmd and from vLLM is then the same series.
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

template <class M>
Family<M>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                  std::vector<double> bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      bounds_(std::move(bounds)) {}

template <class M>
M& Family<M>::with(std::span<const std::string_view> values) {
  if (values.size() != label_names_.size())
    fail("metric {}: {} label values given, the family has {} labels", name_, values.size(),
         label_names_.size());
  const std::string_view key = label_key(values);
  std::lock_guard lock(mu_);
  if (auto it = index_.find(key); it != index_.end()) return *it->second;
  std::unique_ptr<M> m;
  if constexpr (std::is_same_v<M, Histogram>)
    m = std::make_unique<Histogram>(std::span<const double>(bounds_));
  else
    m = std::make_unique<M>();
  M* raw = m.get();
  children_.push_back({std::vector<std::string>(values.begin(), values.end()), std::move(m)});
  index_.emplace(std::string(key), raw);
  return *raw;
}

template <class M>
M& Family<M>::with(const std::vector<std::string>& values) {
  std::vector<std::string_view> views(values.begin(), values.end());
  return with(std::span<const std::string_view>(views));
}

template <class M>
void Family<M>::render(std::string& out, Type type) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name_, escape_help(help_), name_, type_name(type));
  std::lock_guard lock(mu_);
  for (const Child& c : children_) {
    if constexpr (std::is_same_v<M, Histogram>) {
      const Histogram::Snapshot s = c.metric->snapshot();
      for (size_t i = 0; i <= bounds_.size(); ++i) {
        out += name_;
        out += "_bucket";
        append_labels(out, label_names_, c.values);
        out += label_names_.empty() ? "{" : ",";
        out += "le=\"";
        out += i < bounds_.size() ? format_value(bounds_[i]) : "+Inf";
        out += "\"} ";
        out += format_value(static_cast<double>(s.cumulative[i]));
        out += '\n';
      }
      append_sample(out, name_, "_sum", label_names_, c.values, s.sum);
      append_sample(out, name_, "_count", label_names_, c.values, static_cast<double>(s.count));
    } else {
      append_sample(out, name_, "", label_names_, c.values, c.metric->value());
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

struct Registry::Entry {
  Type type;
  std::string name;
  std::unique_ptr<CounterFamily> counter;
  std::unique_ptr<GaugeFamily> gauge;
  std::unique_ptr<HistogramFamily> histogram;

  const std::vector<std::string>& label_names() const {
    return counter ? counter->label_names() : gauge ? gauge->label_names() : histogram->label_names();
  }
};

Registry::Registry() = default;
Registry::~Registry() = default;

namespace {

void check_names(std::string_view name, const std::vector<std::string>& labels, Type type) {
  if (!valid_metric_name(name)) fail("invalid metric name '{}'", name);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (!valid_label_name(labels[i])) fail("metric {}: invalid label name '{}'", name, labels[i]);
    if (type == Type::kHistogram && labels[i] == "le")
      fail("metric {}: a histogram cannot have label 'le'", name);
    for (size_t j = 0; j < i; ++j)
      if (labels[j] == labels[i]) fail("metric {}: label '{}' given twice", name, labels[i]);
  }
}

}  // namespace

Registry::Entry* Registry::find_or_null(std::string_view exposed_name, Type type,
                                        const std::vector<std::string>& labels,
                                        std::span<const double> bounds) {
  for (auto& e : entries_) {
    if (e->name != exposed_name) continue;
    if (e->type != type || e->label_names() != labels)
      fail("metric {} is already registered with another type or label names", exposed_name);
    if (type == Type::kHistogram && !std::ranges::equal(e->histogram->bounds_, bounds))
      fail("metric {} is already registered with other buckets", exposed_name);
    return e.get();
  }
  return nullptr;
}

CounterFamily& Registry::counter(std::string_view name, std::string_view help,
                                 std::vector<std::string> label_names) {
  std::string exposed(name);
  if (!exposed.ends_with("_total")) exposed += "_total";
  check_names(exposed, label_names, Type::kCounter);
  std::lock_guard lock(mu_);
  if (Entry* e = find_or_null(exposed, Type::kCounter, label_names, {})) return *e->counter;
  auto e = std::make_unique<Entry>();
  e->type = Type::kCounter;
  e->name = exposed;
  e->counter.reset(new CounterFamily(exposed, std::string(help), std::move(label_names), {}));
  entries_.push_back(std::move(e));
  return *entries_.back()->counter;
}

GaugeFamily& Registry::gauge(std::string_view name, std::string_view help,
                             std::vector<std::string> label_names) {
  check_names(name, label_names, Type::kGauge);
  std::lock_guard lock(mu_);
  if (Entry* e = find_or_null(name, Type::kGauge, label_names, {})) return *e->gauge;
  auto e = std::make_unique<Entry>();
  e->type = Type::kGauge;
  e->name = std::string(name);
  e->gauge.reset(new GaugeFamily(std::string(name), std::string(help), std::move(label_names), {}));
  entries_.push_back(std::move(e));
  return *entries_.back()->gauge;
}

HistogramFamily& Registry::histogram(std::string_view name, std::string_view help,
                                     std::span<const double> bounds, std::vector<std::string> label_names) {
  check_names(name, label_names, Type::kHistogram);
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) fail("metric {}: bucket bounds must be finite (+Inf is implied)", name);
    if (i > 0 && !(bounds[i] > bounds[i - 1])) fail("metric {}: bucket bounds must increase strictly", name);
  }
  std::lock_guard lock(mu_);
  if (Entry* e = find_or_null(name, Type::kHistogram, label_names, bounds)) return *e->histogram;
  auto e = std::make_unique<Entry>();
  e->type = Type::kHistogram;
  e->name = std::string(name);
  e->histogram.reset(new HistogramFamily(std::string(name), std::string(help), std::move(label_names),
                                         std::vector<double>(bounds.begin(), bounds.end())));
  entries_.push_back(std::move(e));
  return *entries_.back()->histogram;
}

void Registry::info(std::string_view name, std::string_view help,
                    const std::vector<std::pair<std::string, std::string>>& labels) {
  std::vector<std::string> names, values;
  for (const auto& [k, v] : labels) {
    names.push_back(k);
    values.push_back(v);
  }
  gauge(name, help, std::move(names)).with(values).set(1.0);
}

std::string Registry::render() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& e : entries_) {
    switch (e->type) {
      case Type::kCounter:
        e->counter->render(out, e->type);
        break;
      case Type::kGauge:
        e->gauge->render(out, e->type);
        break;
      case Type::kHistogram:
        e->histogram->render(out, e->type);
        break;
    }
  }
  return out;
}

}  // namespace llmd::metrics
