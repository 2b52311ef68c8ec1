// The metrics registry: exact exposition text, lock-free updates under contention, registration
// rules, and the real Prometheus tools reading the output (promtool's parser and linter, and a
// prometheus server scraping it over HTTP).
#include "common/metrics.hpp"
#include "support/free_port.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/error.hpp"

extern char** environ;

namespace llmd::metrics {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The vLLM metric set of DESIGN.md, labelled as vLLM labels it.
void register_vllm_set(Registry& r, std::string_view model, std::string_view engine) {
  const std::vector<std::string> labels = {std::string(kModelNameLabel), std::string(kEngineLabel)};
  r.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", labels)
      .with({model, engine})
      .set(3);
  r.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels)
      .with({model, engine})
      .set(1);
  r.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labels)
      .with({model, engine})
      .set(0.25);
  r.info("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
         {{"block_size", "16"}, {"num_gpu_blocks", "1024"}});
  r.counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.",
            labels)
      .with({model, engine})
      .inc(640);
  r.counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", labels)
      .with({model, engine})
      .inc(384);
  r.counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", labels)
      .with({model, engine})
      .inc(42);
  r.counter("vllm:generation_tokens", "Number of generation tokens processed.", labels)
      .with({model, engine})
      .inc(7);
  r.counter("vllm:request_success", "Count of successfully processed requests.",
            {std::string(kModelNameLabel), std::string(kEngineLabel), "finished_reason"})
      .with({model, engine, "stop"})
      .inc();
  r.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
              kTtftBuckets, labels)
      .with({model, engine})
      .observe(0.03);
  r.histogram("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.",
              kTpotBuckets, labels)
      .with({model, engine})
      .observe(0.012);
  r.histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
              kTpotBuckets, labels)
      .with({model, engine})
      .observe(0.011);
  r.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", kE2eBuckets,
              labels)
      .with({model, engine})
      .observe(1.2);
}

TEST(Metrics, RendersCountersGaugesAndInfoExactly) {
  Registry r;
  auto& c = r.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", {"model_name", "engine"});
  c.with({"m", "0"}).inc(5);
  c.with({"m", "1"}).inc();
  r.gauge("vllm:kv_cache_usage_perc", "KV-cache usage.").with({}).set(0.5);
  r.info("vllm:cache_config_info", "Cache config.", {{"block_size", "16"}, {"num_gpu_blocks", "2048"}});
  EXPECT_EQ(r.render(),
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
            "# TYPE vllm:prompt_tokens_total counter\n"
            "vllm:prompt_tokens_total{model_name=\"m\",engine=\"0\"} 5.0\n"
            "vllm:prompt_tokens_total{model_name=\"m\",engine=\"1\"} 1.0\n"
            "# HELP vllm:kv_cache_usage_perc KV-cache usage.\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            "vllm:kv_cache_usage_perc 0.5\n"
            "# HELP vllm:cache_config_info Cache config.\n"
            "# TYPE vllm:cache_config_info gauge\n"
            "vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"2048\"} 1.0\n");
}

TEST(Metrics, CounterNameGetsExactlyOneTotalSuffix) {
  Registry r;
  auto& a = r.counter("vllm:generation_tokens", "g");
  auto& b = r.counter("vllm:generation_tokens_total", "g");  // the same family
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(a.name(), "vllm:generation_tokens_total");
}

TEST(Metrics, CountersIgnoreNegativeAndNaN) {
  Registry r;
  Counter& c = r.counter("x", "x").with({});
  c.inc(2);
  c.inc(-1);
  c.inc(std::nan(""));
  EXPECT_EQ(c.value(), 2.0);
}

TEST(Metrics, HistogramBucketsAreCumulativeAndLeInclusive) {
  Registry r;
  const double bounds[] = {0.1, 1, 10};
  Histogram& h = r.histogram("lat_seconds", "Latency.", bounds, {"role"}).with({"decode"});
  for (double v : {0.05, 0.1, 0.5, 1.0, 20.0}) h.observe(v);
  EXPECT_EQ(r.render(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{role=\"decode\",le=\"0.1\"} 2.0\n"
            "lat_seconds_bucket{role=\"decode\",le=\"1.0\"} 4.0\n"
            "lat_seconds_bucket{role=\"decode\",le=\"10.0\"} 4.0\n"
            "lat_seconds_bucket{role=\"decode\",le=\"+Inf\"} 5.0\n"
            "lat_seconds_sum{role=\"decode\"} 21.65\n"
            "lat_seconds_count{role=\"decode\"} 5.0\n");
}

TEST(Metrics, UnlabelledHistogramHasOnlyLe) {
  Registry r;
  const double bounds[] = {1};
  r.histogram("h", "h", bounds).with({}).observe(3);
  EXPECT_NE(r.render().find("h_bucket{le=\"+Inf\"} 1.0\nh_sum 3.0\nh_count 1.0\n"), std::string::npos);
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  Registry r;
  r.gauge("g", "line1\nback\\slash \"quotes\" stay", {"path"}).with({"a\"b\\c\nd"}).set(1);
  const std::string out = r.render();
  EXPECT_NE(out.find("# HELP g line1\\nback\\\\slash \"quotes\" stay\n"), std::string::npos) << out;
  EXPECT_NE(out.find("g{path=\"a\\\"b\\\\c\\nd\"} 1.0\n"), std::string::npos) << out;
}

TEST(Metrics, FormatsValuesLikePrometheusClients) {
  EXPECT_EQ(format_value(1), "1.0");
  EXPECT_EQ(format_value(0.001), "0.001");
  EXPECT_EQ(format_value(2560), "2560.0");
  EXPECT_EQ(format_value(-3), "-3.0");
  EXPECT_EQ(format_value(1e300), "1e+300");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(std::nan("")), "NaN");
}

TEST(Metrics, RegistrationRules) {
  Registry r;
  auto& g = r.gauge("a:b", "h", {"x"});
  EXPECT_EQ(&g, &r.gauge("a:b", "other help is fine", {"x"}));
  EXPECT_THROW(r.gauge("a:b", "h", {"y"}), Error);
  EXPECT_NO_THROW(r.counter("a:b", "h", {"x"}));  // exposed as a:b_total: another name
  EXPECT_THROW(r.gauge("1abc", "h"), Error);
  EXPECT_THROW(r.gauge("a-b", "h"), Error);
  EXPECT_THROW(r.gauge("ok", "h", {"__reserved"}), Error);
  EXPECT_THROW(r.gauge("ok", "h", {"a:b"}), Error);
  EXPECT_THROW(r.gauge("ok", "h", {"a", "a"}), Error);
  const double bad[] = {1, 1};
  EXPECT_THROW(r.histogram("h1", "h", bad), Error);
  const double inf[] = {1, std::numeric_limits<double>::infinity()};
  EXPECT_THROW(r.histogram("h2", "h", inf), Error);
  EXPECT_THROW(r.histogram("h3", "h", kTtftBuckets, {"le"}), Error);
  r.histogram("h4", "h", kTtftBuckets);
  EXPECT_THROW(r.histogram("h4", "h", kTpotBuckets), Error);
  EXPECT_THROW(g.with({"1", "2"}), Error);
}

TEST(Metrics, ChildReferencesAreStableAndSharedByLabelValues) {
  Registry r;
  auto& f = r.counter("c", "c", {"a"});
  Counter& first = f.with({"0"});
  for (int i = 1; i < 1000; ++i) f.with({std::to_string(i)});  // grow the container a lot
  EXPECT_EQ(&first, &f.with({"0"}));
  EXPECT_EQ(&f.with({"ab"}), &f.with(std::vector<std::string>{"ab"}));
}

TEST(Metrics, ConcurrentUpdatesLoseNothingWhileRendering) {
  Registry r;
  const double bounds[] = {0.5};
  Counter& c = r.counter("c", "c").with({});
  Gauge& g = r.gauge("g", "g").with({});
  Histogram& h = r.histogram("h", "h", bounds).with({});
  constexpr int kThreads = 4, kIters = 100000;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done) {
      // Every scrape is self-consistent: _count equals the +Inf bucket.
      const Histogram::Snapshot s = h.snapshot();
      ASSERT_EQ(s.count, s.cumulative.back());
      (void)r.render();
    }
  });
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < kIters; ++i) {
        c.inc();
        g.inc();
        g.dec(0.5);
        h.observe(t % 2 ? 0.25 : 1.0);
      }
    });
  for (auto& t : ts) t.join();
  done = true;
  scraper.join();
  EXPECT_EQ(c.value(), kThreads * kIters);
  EXPECT_EQ(g.value(), kThreads * kIters * 0.5);
  const Histogram::Snapshot s = h.snapshot();
  EXPECT_EQ(s.count, uint64_t(kThreads) * kIters);
  EXPECT_EQ(s.cumulative[0], uint64_t(kThreads / 2) * kIters);
  EXPECT_DOUBLE_EQ(s.sum, (kThreads / 2) * kIters * 1.25);
}

// --- the real Prometheus tools ------------------------------------------------------------------

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "llmd-metrics-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

struct CommandResult {
  int rc = -1;
  std::string output;
};

CommandResult run_shell(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// promtool exits 1 on a parse error and 3 when it only has lint findings. The only finding
// accepted is the one vLLM's own names cause: "metric names should not contain ':'".
CommandResult promtool_check(const std::string& text, const TempDir& dir) {
  const fs::path file = dir.path / "metrics.txt";
  std::ofstream(file) << text;
  return run_shell(fmt::format("promtool check metrics < '{}'", file.string()));
}

TEST(MetricsPromtool, AcceptsTheVllmSetWithOnlyColonLints) {
  if (!fs::exists("/usr/bin/promtool")) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  TempDir dir;
  Registry r;
  register_vllm_set(r, "llama \"3\"\\8b", "0");
  const CommandResult res = promtool_check(r.render(), dir);
  ASSERT_TRUE(res.rc == 0 || res.rc == 3) << "promtool rejected the exposition:\n" << res.output;
  std::istringstream lines(res.output);
  int lints = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    ++lints;
    EXPECT_TRUE(line.starts_with("vllm:") && line.ends_with("metric names should not contain ':'"))
        << "unexpected promtool finding: " << line;
  }
  EXPECT_EQ(lints, 13) << res.output;  // one per vLLM family
}

TEST(MetricsPromtool, LlmdStyleNamesPassWithoutFindings) {
  if (!fs::exists("/usr/bin/promtool")) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  TempDir dir;
  Registry r;
  r.counter("llmd_kv_transfer_bytes", "Bytes moved between servers.", {"direction"}).with({"in"}).inc(4096);
  r.gauge("llmd_router_endpoints", "Endpoints known to the router.", {"role"}).with({"decode"}).set(4);
  r.histogram("llmd_router_pick_seconds", "Time to pick an endpoint.", kTpotBuckets).with({}).observe(0.02);
  r.info("llmd_build_info", "Build information.", {{"version", "0.1"}});
  const CommandResult res = promtool_check(r.render(), dir);
  EXPECT_EQ(res.rc, 0) << res.output;
  EXPECT_EQ(res.output, "");
}

TEST(MetricsPromtool, DetectsBrokenExposition) {
  // Guards the check above: promtool does fail on malformed text, so its silence means something.
  if (!fs::exists("/usr/bin/promtool")) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  TempDir dir;
  EXPECT_EQ(promtool_check("# TYPE x counter\nx{a=\"unterminated} 1\n", dir).rc, 1);
}

// A minimal HTTP/1.0 exchange over a plain socket, enough to serve /metrics and call Prometheus's API.
int listen_on_free_port(uint16_t& port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 16) != 0) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

using llmd::test_support::free_port;

void send_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    s.remove_prefix(static_cast<size_t>(n));
  }
}

std::string http_get(uint16_t port, const std::string& target) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  std::string resp;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    send_all(fd, fmt::format("GET {} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", target));
    char buf[8192];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) resp.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t body = resp.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : resp.substr(body + 4);
}

// Serves `registry.render()` to every request until destroyed; counts the scrapes.
class MetricsEndpoint {
 public:
  explicit MetricsEndpoint(const Registry& registry) : registry_(registry) {
    fd_ = listen_on_free_port(port_);
    thread_ = std::thread([this] { loop(); });
  }
  ~MetricsEndpoint() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  int scrapes() const { return scrapes_; }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        pollfd q{c, POLLIN, 0};
        if (poll(&q, 1, 2000) <= 0) break;
        const ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      const std::string body = registry_.render();
      send_all(c,
               fmt::format(
                   "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                   kContentType, body.size()));
      send_all(c, body);
      close(c);
      ++scrapes_;
    }
  }

  const Registry& registry_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> scrapes_{0};
  std::thread thread_;
};

TEST(MetricsPrometheus, ServerScrapesTheEndpointAndSeesTheValues) {
  if (!fs::exists("/usr/bin/prometheus"))
    GTEST_SKIP() << "prometheus not installed (Debian package prometheus)";
  TempDir dir;
  Registry r;
  register_vllm_set(r, "sim-model", "0");
  MetricsEndpoint endpoint(r);
  const uint16_t prom_port = free_port();
  std::ofstream(dir.path / "prometheus.yml") << fmt::format(
      "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
      "scrape_configs:\n  - job_name: llmd\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
      endpoint.port());

  const std::string log = (dir.path / "prometheus.log").string();
  std::vector<std::string> args = {"/usr/bin/prometheus",
                                   "--config.file=" + (dir.path / "prometheus.yml").string(),
                                   "--storage.tsdb.path=" + (dir.path / "data").string(),
                                   fmt::format("--web.listen-address=127.0.0.1:{}", prom_port)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      kill(pid, SIGTERM);
      int st;
      waitpid(pid, &st, 0);
    }
  } reaper{pid};

  // Wait (up to 60 s: a loaded 2-core machine) for a scrape that Prometheus reports healthy.
  nlohmann::json target;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string body = http_get(prom_port, "/api/v1/targets");
    const auto j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_discarded() && j.value("status", "") == "success" && !j["data"]["activeTargets"].empty()) {
      target = j["data"]["activeTargets"][0];
      if (target.value("health", "") == "up" || !target.value("lastError", "").empty()) break;
    }
    std::this_thread::sleep_for(250ms);
  }
  std::ifstream lf(log);
  const std::string prom_log((std::istreambuf_iterator<char>(lf)), {});
  ASSERT_FALSE(target.is_null()) << "prometheus never listed the target; its log:\n" << prom_log;
  EXPECT_EQ(target.value("health", ""), "up") << target.dump(2);
  EXPECT_EQ(target.value("lastError", "x"), "") << target.dump(2);
  EXPECT_GE(endpoint.scrapes(), 1);

  // The scraped sample is queryable under vLLM's name, with its labels.
  const auto q = nlohmann::json::parse(
      http_get(prom_port, "/api/v1/query?query=vllm:prompt_tokens_total%7Bmodel_name%3D%22sim-model%22%7D"),
      nullptr, false);
  ASSERT_FALSE(q.is_discarded());
  ASSERT_EQ(q["data"]["result"].size(), 1u) << q.dump(2);
  EXPECT_EQ(q["data"]["result"][0]["value"][1], "42");
  EXPECT_EQ(q["data"]["result"][0]["metric"]["engine"], "0");
}

}  // namespace
}  // namespace llmd::metrics
