#include "bench/report.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/prometheus_text.hpp"

namespace llmd::bench {

double percentile_sorted(const std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const double rank = std::clamp(q, 0.0, 100.0) / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

std::optional<Stat> summarize(std::vector<double> v) {
  if (v.empty()) return std::nullopt;
  std::sort(v.begin(), v.end());
  Stat s;
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  s.p50 = percentile_sorted(v, 50);
  s.p90 = percentile_sorted(v, 90);
  s.p99 = percentile_sorted(v, 99);
  return s;
}

Slo parse_slo(std::string_view spec) {
  Slo slo;
  std::size_t pos = 0;
  while (pos <= spec.size()) {
    std::size_t comma = spec.find(',', pos);
    if (comma == std::string_view::npos) comma = spec.size();
    const std::string_view part = spec.substr(pos, comma - pos);
    pos = comma + 1;
    if (part.empty()) continue;
    const std::size_t eq = part.find('=');
    if (eq == std::string_view::npos) fail("--slo: '{}' is not KEY=MS", part);
    const std::string_view key = part.substr(0, eq), val = part.substr(eq + 1);
    double ms = 0;
    const auto [end, ec] = std::from_chars(val.data(), val.data() + val.size(), ms);
    if (ec != std::errc() || end != val.data() + val.size() || !(ms > 0))
      fail("--slo: '{}' needs a positive number of milliseconds", part);
    if (key == "ttft_ms")
      slo.ttft_ms = ms;
    else if (key == "tpot_ms")
      slo.tpot_ms = ms;
    else if (key == "itl_ms")
      slo.itl_ms = ms;
    else if (key == "e2e_ms")
      slo.e2e_ms = ms;
    else
      fail("--slo: unknown bound '{}' (ttft_ms, tpot_ms, itl_ms, e2e_ms)", key);
  }
  return slo;
}

bool meets(const RequestRecord& r, const Slo& slo) {
  if (!r.ok) return false;
  if (slo.ttft_ms && r.ttft_s() * 1e3 > *slo.ttft_ms) return false;
  if (slo.tpot_ms) {
    const auto t = r.tpot_s();
    if (t && *t * 1e3 > *slo.tpot_ms) return false;
  }
  if (slo.itl_ms && !r.itl_s.empty() && *std::max_element(r.itl_s.begin(), r.itl_s.end()) * 1e3 > *slo.itl_ms)
    return false;
  if (slo.e2e_ms && r.e2e_s() * 1e3 > *slo.e2e_ms) return false;
  return true;
}

Report make_report(const std::vector<RequestRecord>& records, double duration_s, const Slo& slo) {
  Report rep;
  rep.slo = slo;
  rep.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e;
  uint64_t good = 0;
  for (const RequestRecord& r : records) {
    if (r.warmup) {
      ++rep.requests_warmup;
      continue;
    }
    if (!r.ok) {
      ++rep.requests_failed;
      ++rep.failures_by_kind[r.error_kind.empty() ? "unknown" : r.error_kind];
      continue;
    }
    ++rep.requests_completed;
    rep.total_input_tokens += r.prompt_len;
    rep.total_output_tokens += r.output_tokens;
    if (r.first_s >= 0) ttft.push_back(r.ttft_s() * 1e3);
    if (const auto t = r.tpot_s()) tpot.push_back(*t * 1e3);
    for (double g : r.itl_s) itl.push_back(g * 1e3);
    e2e.push_back(r.e2e_s() * 1e3);
    if (meets(r, slo)) ++good;
  }
  rep.ttft_ms = summarize(std::move(ttft));
  rep.tpot_ms = summarize(std::move(tpot));
  rep.itl_ms = summarize(std::move(itl));
  rep.e2e_ms = summarize(std::move(e2e));
  if (duration_s > 0) {
    rep.request_throughput = static_cast<double>(rep.requests_completed) / duration_s;
    rep.output_throughput = static_cast<double>(rep.total_output_tokens) / duration_s;
    if (!slo.empty()) rep.goodput = static_cast<double>(good) / duration_s;
  } else if (!slo.empty()) {
    rep.goodput = 0.0;
  }
  return rep;
}

namespace {

nlohmann::json stat_json(const std::optional<Stat>& s) {
  if (!s) return {{"mean", nullptr}, {"p50", nullptr}, {"p90", nullptr}, {"p99", nullptr}};
  return {{"mean", s->mean}, {"p50", s->p50}, {"p90", s->p90}, {"p99", s->p99}};
}

template <class T>
nlohmann::json opt_json(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

std::string num(const std::optional<double>& v, int precision = 2) {
  return v ? fmt::format("{:.{}f}", *v, precision) : std::string("-");
}

}  // namespace

nlohmann::json to_json(const Report& r) {
  nlohmann::json slo = nlohmann::json::object();
  if (r.slo.ttft_ms) slo["ttft_ms"] = *r.slo.ttft_ms;
  if (r.slo.tpot_ms) slo["tpot_ms"] = *r.slo.tpot_ms;
  if (r.slo.itl_ms) slo["itl_ms"] = *r.slo.itl_ms;
  if (r.slo.e2e_ms) slo["e2e_ms"] = *r.slo.e2e_ms;
  return {{"requests_completed", r.requests_completed},
          {"requests_failed", r.requests_failed},
          {"ttft_ms", stat_json(r.ttft_ms)},
          {"tpot_ms", stat_json(r.tpot_ms)},
          {"itl_ms", stat_json(r.itl_ms)},
          {"e2e_ms", stat_json(r.e2e_ms)},
          {"request_throughput", r.request_throughput},
          {"output_throughput", r.output_throughput},
          {"goodput", opt_json(r.goodput)},
          {"prefix_cache_hit_rate", opt_json(r.prefix_cache_hit_rate)},
          // Extras.
          {"failures_by_kind", r.failures_by_kind},
          {"requests_warmup", r.requests_warmup},
          {"duration_s", r.duration_s},
          {"generator_cpu_s", opt_json(r.generator_cpu_s)},
          {"total_input_tokens", r.total_input_tokens},
          {"total_output_tokens", r.total_output_tokens},
          {"slo", slo}};
}

std::string format_table(const Report& r, std::string_view title) {
  constexpr int kWidth = 50;
  std::string out;
  auto line = [&](std::string_view label, const std::string& value) {
    out += fmt::format("{:<34}{:>16}\n", label, value);
  };
  auto rule = [&](std::string_view head) {
    const int pad = std::max(0, kWidth - static_cast<int>(head.size()) - 2);
    out += fmt::format("{:=<{}} {} {:=<{}}\n", "", pad / 2, head, "", pad - pad / 2);
  };
  rule(title);
  line("Successful requests:", fmt::format("{}", r.requests_completed));
  line("Failed requests:", fmt::format("{}", r.requests_failed));
  for (const auto& [kind, n] : r.failures_by_kind) line(fmt::format("  {}:", kind), fmt::format("{}", n));
  line("Benchmark duration (s):", num(r.duration_s));
  line("Total input tokens:", fmt::format("{}", r.total_input_tokens));
  line("Total generated tokens:", fmt::format("{}", r.total_output_tokens));
  line("Request throughput (req/s):", num(r.request_throughput));
  line("Output token throughput (tok/s):", num(r.output_throughput));
  line("Goodput (req/s):", num(r.goodput));
  line("Prefix cache hit rate:", num(r.prefix_cache_hit_rate, 4));
  if (r.generator_cpu_s) line("Generator CPU time (s):", num(r.generator_cpu_s));
  auto stat = [&](std::string_view head, std::string_view name, const std::optional<Stat>& s) {
    rule(head);
    line(fmt::format("Mean {} (ms):", name), num(s ? std::optional(s->mean) : std::nullopt));
    line(fmt::format("P50 {} (ms):", name), num(s ? std::optional(s->p50) : std::nullopt));
    line(fmt::format("P90 {} (ms):", name), num(s ? std::optional(s->p90) : std::nullopt));
    line(fmt::format("P99 {} (ms):", name), num(s ? std::optional(s->p99) : std::nullopt));
  };
  stat("Time to First Token", "TTFT", r.ttft_ms);
  stat("Time per Output Token (excl. 1st token)", "TPOT", r.tpot_ms);
  stat("Inter-token Latency", "ITL", r.itl_ms);
  stat("End-to-end Latency", "E2E", r.e2e_ms);
  out += fmt::format("{:=<{}}\n", "", kWidth);
  return out;
}

std::optional<double> prometheus_sum(std::string_view text, std::string_view name) {
  std::optional<double> sum;
  prometheus::parse(text, [&](const prometheus::Sample& smp) {
    if (smp.name == name) sum = sum.value_or(0.0) + smp.value;
  });
  return sum;
}

std::optional<double> prefix_cache_hit_rate(std::string_view before, std::string_view after) {
  constexpr std::string_view kHits = "vllm:prefix_cache_hits_total";
  constexpr std::string_view kQueries = "vllm:prefix_cache_queries_total";
  const auto h0 = prometheus_sum(before, kHits), h1 = prometheus_sum(after, kHits);
  const auto q0 = prometheus_sum(before, kQueries), q1 = prometheus_sum(after, kQueries);
  if (!h0 || !h1 || !q0 || !q1) return std::nullopt;
  const double dq = *q1 - *q0;
  if (dq <= 0) return std::nullopt;
  return std::clamp((*h1 - *h0) / dq, 0.0, 1.0);
}

}  // namespace llmd::bench
