#pragma once
// What a benchmark run measured, summarised: latency statistics (TTFT, TPOT, ITL, E2E), throughput,
// goodput under SLO bounds, failures by kind; printed as a table and written as JSON.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace llmd::bench {

// One request as the driver saw it. Times are seconds from the start of the measured phase.
struct RequestRecord {
  uint64_t id = 0;
  bool warmup = false;
  bool ok = false;
  std::string
      error_kind;     // "" when ok: connect, timeout, http_NNN, malformed_sse, server_error, incomplete, io
  std::string error;  // the detail, for the log
  double send_s = 0, first_s = -1, end_s = 0;
  std::vector<double> itl_s;  // gaps between consecutive chunks that carried text
  int64_t output_tokens = 0;  // from usage when the server sent it, else the text chunks
  int32_t prompt_len = 0;

  double ttft_s() const { return first_s - send_s; }
  double e2e_s() const { return end_s - send_s; }
  // vLLM's TPOT: decode time after the first token per further token; nullopt for a single token.
  std::optional<double> tpot_s() const {
    if (output_tokens < 2 || first_s < 0) return std::nullopt;
    return (end_s - first_s) / static_cast<double>(output_tokens - 1);
  }
};

struct Stat {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
};
// Percentiles by linear interpolation between order statistics (numpy's default); nullopt if empty.
std::optional<Stat> summarize(std::vector<double> values);
double percentile_sorted(const std::vector<double>& sorted, double q);  // q in [0,100]

// `--slo ttft_ms=200,tpot_ms=50`: every bound given must hold for a request to count as good.
struct Slo {
  std::optional<double> ttft_ms, tpot_ms, itl_ms, e2e_ms;  // itl: the request's largest gap
  bool empty() const { return !ttft_ms && !tpot_ms && !itl_ms && !e2e_ms; }
};
Slo parse_slo(std::string_view spec);  // throws llmd::Error naming the bad part
bool meets(const RequestRecord& r, const Slo& slo);

struct Report {
  uint64_t requests_completed = 0, requests_failed = 0, requests_warmup = 0;
  std::map<std::string, uint64_t> failures_by_kind;
  double duration_s = 0;
  int64_t total_input_tokens = 0, total_output_tokens = 0;
  std::optional<Stat> ttft_ms, tpot_ms, itl_ms, e2e_ms;
  double request_throughput = 0, output_throughput = 0;
  std::optional<double> goodput;  // null without --slo
  std::optional<double> prefix_cache_hit_rate;
  // CPU seconds the generator itself spent driving the run: near the duration means the generator,
  // not the server, may have been the limit.
  std::optional<double> generator_cpu_s;
  Slo slo;
};

// `duration_s`: the measured phase, first send to last end (the driver's number).
Report make_report(const std::vector<RequestRecord>& records, double duration_s, const Slo& slo);

nlohmann::json to_json(const Report& r);
std::string format_table(const Report& r, std::string_view title);

// Prometheus text: the sum of every sample of `name` (all label sets); nullopt when absent.
std::optional<double> prometheus_sum(std::string_view text, std::string_view name);
// Δhits / Δqueries of vllm:prefix_cache_{hits,queries}_total between two scrapes; nullopt when
// either scrape lacks them or no query happened.
std::optional<double> prefix_cache_hit_rate(std::string_view before, std::string_view after);

}  // namespace llmd::bench
