// `llmd bench`: the serving benchmark (TTFT, TPOT, ITL, throughput, goodput) against any
// OpenAI-compatible URL. Flags fill the workload and driver configs here, in one place.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "bench/driver.hpp"
#include "bench/plot.hpp"
#include "bench/report.hpp"
#include "bench/workload.hpp"
#include "cli/commands.hpp"
#include "common/error.hpp"
#include "common/http_client.hpp"
#include "model/gguf.hpp"
#include "model/tokenizer.hpp"

namespace llmd::cli {
namespace {

struct BenchCliArgs {
  std::string base_url;
  std::string model;
  std::string endpoint = "completions";
  std::string api_key;
  std::string tokenizer;
  std::string request_rate = "inf";
  std::string slo;
  std::string metrics_url;
  std::string json_path;
  std::string plot_path;
  double timeout_s = 600;
  bench::WorkloadOptions workload;
  bench::DriverConfig driver;
};

double parse_rate(const std::string& s) {
  if (s == "inf" || s == "infinity") return bench::DriverConfig::kUnlimitedRate;
  std::size_t used = 0;
  double r = 0;
  try {
    r = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || !(r > 0) || !std::isfinite(r))
    fail("--request-rate must be a positive number or inf, got '{}'", s);
  return r;
}

// A connection per in-flight request: a large --max-concurrency (or inf without it) needs more
// descriptors than the usual soft limit of 1024.
void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

std::optional<std::string> scrape(const bench::BaseUrl& u, const std::string& path) {
  http::ClientConfig c;
  c.connect_timeout = std::chrono::seconds(5);
  c.io_timeout = std::chrono::seconds(10);
  try {
    http::ClientResponse r = http::fetch(u.host, u.port, "GET", path, {}, {}, c);
    if (r.status == 200) return std::move(r.body);
    std::fprintf(stderr, "llmd bench: warning: %s answered %d; no prefix cache hit rate\n", path.c_str(),
                 r.status);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llmd bench: warning: cannot scrape metrics: %s\n", e.what());
  }
  return std::nullopt;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
  };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

void write_output(std::string_view flag, const std::string& path, const std::string& content) {
  std::ofstream out(path);
  if (!out) fail("{} {}: cannot write", flag, path);
  out << content;
  if (!out) fail("{} {}: write failed", flag, path);
}

class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled) {}
  void update(const bench::Progress& p) {
    const auto now = std::chrono::steady_clock::now();
    const uint64_t done = p.completed + p.failed;
    if (now - last_ < std::chrono::milliseconds(100) && done != p.total) return;
    last_ = now;
    const double frac = p.total ? static_cast<double>(done) / static_cast<double>(p.total) : 0;
    constexpr int kBar = 30;
    const int filled = static_cast<int>(frac * kBar);
    std::fprintf(stderr, "\r%s [%s%s] %llu/%llu  failed %llu  %.1f req/s   ",
                 p.warmup ? "warm-up" : "bench  ", std::string(filled, '#').c_str(),
                 std::string(kBar - filled, '.').c_str(), static_cast<unsigned long long>(done),
                 static_cast<unsigned long long>(p.total), static_cast<unsigned long long>(p.failed),
                 p.elapsed_s > 0 ? static_cast<double>(done) / p.elapsed_s : 0.0);
    shown_ = true;
  }
  void end() {
    if (shown_) std::fputs("\n", stderr);
  }
  bool enabled() const { return enabled_; }

 private:
  bool enabled_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

void run_bench(BenchCliArgs& a) {
  bench::DriverConfig& d = a.driver;
  d.url = bench::parse_base_url(a.base_url);
  d.endpoint = bench::parse_endpoint(a.endpoint);
  d.model = a.model;
  d.api_key = a.api_key;
  d.request_rate = parse_rate(a.request_rate);
  if (!(a.timeout_s > 0)) fail("--timeout must be positive, got {}", a.timeout_s);
  if (!(d.temperature >= 0 && d.temperature <= 2))
    fail("--temperature must be in 0..2, got {}", d.temperature);
  d.request_timeout = std::chrono::milliseconds(static_cast<int64_t>(a.timeout_s * 1e3));
  d.io_timeout = std::min(d.io_timeout, d.request_timeout);
  const bench::Slo slo = bench::parse_slo(a.slo);
  std::optional<bench::BaseUrl> metrics;
  std::string metrics_path;
  if (!a.metrics_url.empty()) {
    metrics = bench::parse_base_url(a.metrics_url);
    metrics_path = metrics->prefix.empty() ? "/metrics" : metrics->prefix;
  }

  std::optional<model::GgufFile> tok_file;
  std::optional<model::Tokenizer> tok;
  if (!a.tokenizer.empty()) {
    tok_file.emplace(model::GgufFile::open(a.tokenizer));
    tok.emplace(model::Tokenizer::from_gguf(*tok_file));
  }
  bench::WorkloadOptions wo = a.workload;
  wo.num_requests = d.num_requests + d.warmup;  // the warm-up comes from the same workload
  bench::WorkloadContext ctx;
  ctx.tokenizer = tok ? &*tok : nullptr;
  ctx.seed = d.seed;
  std::unique_ptr<bench::Workload> workload = bench::make_workload(wo, ctx);
  raise_fd_limit();

  std::optional<std::string> before;
  if (metrics) before = scrape(*metrics, metrics_path);

  ProgressLine progress(isatty(STDERR_FILENO) == 1);
  if (progress.enabled()) d.on_progress = [&progress](const bench::Progress& p) { progress.update(p); };
  std::fprintf(stderr, "llmd bench: %s -> %s:%u%s, rate %s, max concurrency %s\n",
               workload->describe().c_str(), d.url.host.c_str(), d.url.port,
               bench::endpoint_path(d.url, d.endpoint).c_str(), a.request_rate.c_str(),
               d.max_concurrency ? std::to_string(d.max_concurrency).c_str() : "unbounded");
  const double cpu0 = cpu_seconds();
  bench::RunResult run = bench::run_benchmark(*workload, d);
  const double cpu = cpu_seconds() - cpu0;
  progress.end();

  bench::Report rep = bench::make_report(run.records, run.duration_s, slo);
  rep.generator_cpu_s = cpu;
  if (metrics && before) {
    if (const auto after = scrape(*metrics, metrics_path))
      rep.prefix_cache_hit_rate = bench::prefix_cache_hit_rate(*before, *after);
  }
  // The first failure of each kind, so a failing run says why.
  std::map<std::string, const bench::RequestRecord*> first_failure;
  for (const auto& r : run.records)
    if (!r.ok && !r.warmup) first_failure.emplace(r.error_kind, &r);
  for (const auto& [kind, r] : first_failure)
    std::fprintf(stderr, "llmd bench: %s: %s\n", kind.c_str(), r->error.c_str());

  const std::string table = bench::format_table(rep, "Serving Benchmark Result");
  std::fputs(table.c_str(), stdout);
  std::fflush(stdout);
  if (!a.json_path.empty()) write_output("--json", a.json_path, bench::to_json(rep).dump(2) + "\n");
  if (!a.plot_path.empty())
    write_output("--plot", a.plot_path, bench::render_svg(run.records, run.duration_s, workload->describe()));
}

}  // namespace

void register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchCliArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "Serving benchmark against an OpenAI-compatible URL");
  cmd->add_option("--base-url", a->base_url, "Server, e.g. http://127.0.0.1:8000")->required();
  cmd->add_option("--model", a->model, "Model name sent in each request")->required();
  cmd->add_option("--endpoint", a->endpoint, "completions or chat")->capture_default_str();
  cmd->add_option("--api-key", a->api_key, "Bearer key")->envname("LLMD_API_KEY");
  cmd->add_option("--temperature", a->driver.temperature, "Sent with every request (0: greedy)")
      ->capture_default_str();
  bench::WorkloadOptions& w = a->workload;
  cmd->add_option("--workload", w.kind, "random, shared-prefix, multi-turn, sharegpt or trace")
      ->capture_default_str();
  cmd->add_option("--dataset", w.file, "ShareGPT JSON or Mooncake trace JSONL");
  cmd->add_option("--tokenizer", a->tokenizer, "GGUF whose tokenizer builds token-id prompts");
  cmd->add_option("--input-len", w.input_len, "random: prompt tokens")->capture_default_str();
  cmd->add_option("--output-len", w.output_len, "random: output tokens")->capture_default_str();
  cmd->add_option("--range-ratio", w.range_ratio, "random: lengths uniform in len*(1±r)")
      ->capture_default_str();
  cmd->add_option("--num-groups", w.groups, "shared-prefix: groups")->capture_default_str();
  cmd->add_option("--prefix-len", w.prefix_len, "shared-prefix: shared prefix tokens")->capture_default_str();
  cmd->add_option("--question-len", w.question_len, "shared-prefix: question tokens")->capture_default_str();
  cmd->add_option("--questions-per-group", w.questions_per_group, "shared-prefix: questions per group")
      ->capture_default_str();
  cmd->add_option("--turns", w.turns, "multi-turn: turns per conversation")->capture_default_str();
  cmd->add_option("--conversations", w.conversations, "multi-turn: conversations")->capture_default_str();
  bench::DriverConfig& d = a->driver;
  cmd->add_option("--request-rate", a->request_rate, "Requests/s (Poisson arrivals) or inf")
      ->capture_default_str();
  cmd->add_option("--burstiness", d.burstiness, "Gamma shape of arrival gaps (1: Poisson)")
      ->capture_default_str();
  cmd->add_option("--max-concurrency", d.max_concurrency, "Requests in flight at most (0: no bound)");
  cmd->add_option("--num-requests", d.num_requests, "Measured requests")->capture_default_str();
  cmd->add_option("--duration", d.duration_s, "Stop sending after this many seconds (0: no limit)");
  cmd->add_option("--warmup", d.warmup, "Warm-up requests, not measured")->capture_default_str();
  cmd->add_option("--seed", d.seed, "Seed of the workload and the arrivals")->capture_default_str();
  cmd->add_option("--timeout", a->timeout_s, "Seconds one request may take at most")->capture_default_str();
  cmd->add_option("--slo", a->slo, "Goodput bounds, e.g. ttft_ms=200,tpot_ms=50");
  cmd->add_option("--metrics-url", a->metrics_url, "Prometheus /metrics URL for the prefix cache hit rate");
  cmd->add_option("--json", a->json_path, "Write the results as JSON to this file");
  cmd->add_option("--plot", a->plot_path, "Draw TTFT/ITL distributions and throughput over time (SVG)");
  cmd->callback([a] { run_bench(*a); });
}

}  // namespace llmd::cli
