// /metrics of a serving server: every vLLM metric DESIGN.md lists, with values that follow the
// requests served, in an exposition Prometheus's own parser accepts.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

#include "server/server_fixture.hpp"

namespace llmd::server {
namespace {

double sample(const std::string& text, const std::string& series) {
  const std::regex re("\n" + series + "(\\{[^}]*\\})? ([-0-9.e+]+)");
  std::smatch m;
  return std::regex_search(text, m, re) ? std::stod(m[2]) : -1.0;
}

TEST(MetricsEndpoint, VllmMetricsFollowTheRequests) {
  ServerFixture f;
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(
        f.post("/v1/completions", R"({"prompt": "Once upon a time", "max_tokens": 10, "temperature": 0})")
            .status,
        200);
  const std::string m = f.get("/metrics").body;
  for (const char* name :
       {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
        "vllm:cache_config_info", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
        "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
        "vllm:time_to_first_token_seconds_bucket", "vllm:time_per_output_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket", "vllm:e2e_request_latency_seconds_bucket"})
    EXPECT_NE(m.find(std::string("\n") + name), std::string::npos) << name;
  EXPECT_EQ(sample(m, "vllm:prompt_tokens_total"), 15);
  EXPECT_EQ(sample(m, "vllm:generation_tokens_total"), 30);
  EXPECT_EQ(sample(m, "vllm:time_to_first_token_seconds_count"), 3);
  EXPECT_EQ(sample(m, "vllm:e2e_request_latency_seconds_count"), 3);
  EXPECT_EQ(sample(m, "vllm:inter_token_latency_seconds_count"), 27);
  EXPECT_EQ(sample(m, "vllm:num_requests_running"), 0);
  EXPECT_NE(
      m.find("vllm:request_success_total{model_name=\"stories\",engine=\"0\",finished_reason=\"length\"} 3"),
      std::string::npos);
  EXPECT_NE(m.find("vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"256\""), std::string::npos);
}

TEST(MetricsEndpoint, PrometheusParserAcceptsTheExposition) {
  if (!std::filesystem::exists("/usr/bin/promtool"))
    GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  ServerFixture f;
  ASSERT_EQ(f.post("/v1/completions", R"({"prompt": "Zoo", "max_tokens": 4})").status, 200);
  const auto path =
      std::filesystem::temp_directory_path() / ("llmd_metrics_" + std::to_string(getpid()) + ".txt");
  std::ofstream(path) << f.get("/metrics").body;
  FILE* p = popen(("promtool check metrics < '" + path.string() + "' 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = pclose(p);
  std::filesystem::remove(path);
  const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  // 0: clean; 3: lint findings only. vLLM's "vllm:" names always draw the colon lint, nothing else may.
  ASSERT_TRUE(rc == 0 || rc == 3) << out;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) {
      EXPECT_NE(line.find("should not contain ':'"), std::string::npos) << line;
    }
  }
}

}  // namespace
}  // namespace llmd::server
