// `llmd up` as a user runs it: the real binary on the examples, its children real processes.
#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/cli_test_util.hpp"
#include "common/http_client.hpp"
#include "support/free_port.hpp"
#include "support/llmd_process.hpp"

namespace llmd::cli_test {
namespace {

using json = nlohmann::json;
using test_support::free_port;
using test_support::LlmdProcess;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const fs::path kExamples = fs::path(LLMD_SOURCE_DIR) / "examples";

// Each test's clusters keep their run folder (control.json) in a temp dir of their own.
class Up : public ::testing::Test {
 protected:
  void SetUp() override { ::setenv("XDG_RUNTIME_DIR", dir_.path().c_str(), 1); }
  void TearDown() override { ::unsetenv("XDG_RUNTIME_DIR"); }

  json status(const std::string& spec) {
    const RunResult r = run_llmd({"up", spec, "--status"}, dir_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json procs = json::array();
    for (const std::string& l : lines(r.out)) {  // NAME ROLE PID PORT STATE RESTARTS
      std::istringstream in(l);
      std::string name, role, state;
      int pid = 0, port = 0, restarts = 0;
      if (in >> name >> role >> pid >> port >> state >> restarts)
        procs.push_back(
            {{"name", name}, {"role", role}, {"pid", pid}, {"state", state}, {"restarts", restarts}});
    }
    return procs;
  }
  static const json* find(const json& procs, const std::string& name) {
    for (const json& p : procs)
      if (p["name"] == name) return &p;
    return nullptr;
  }

  TempDir dir_;
};

bool eventually(const std::function<bool()>& f, std::chrono::milliseconds within = 30s) {
  const auto until = Clock::now() + within;
  while (Clock::now() < until) {
    if (f()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return f();
}

double metric(uint16_t port, const std::string& series) {
  const std::string m = http::fetch("127.0.0.1", port, "GET", "/metrics").body;
  for (const std::string& l : lines(m))
    if (l.starts_with(series + " ")) return std::stod(l.substr(series.size() + 1));
  return 0;
}

// Waits for llmd up's "is up" line: every server healthy and the router routing to all of them.
bool wait_up(const LlmdProcess& up, std::chrono::seconds within = 60s) {
  return eventually([&] { return up.out().find(" is up: ") != std::string::npos || !up.alive(); }, within) &&
         up.alive();
}

// A chat long enough (over the demo's nonCachedTokens of 64) for the router to split it.
std::string chat_body(int i, bool stream) {
  std::string story = "Once upon a time there was a little girl named Lily " + std::to_string(i) + ".";
  for (int k = 0; k < 12; ++k) story += " She liked to play in the park with her friends every day.";
  return json{{"model", "stories260K"},
              {"messages", {{{"role", "user"}, {"content", story}}}},
              {"max_tokens", 12},
              {"stream", stream}}
      .dump();
}

// Streams a chat through the router; the text it streamed, or nullopt when it failed.
std::optional<std::string> stream_chat(uint16_t port, int i) {
  std::string text, buf;
  try {
    const auto r = http::fetch_stream("127.0.0.1", port, "POST", "/v1/chat/completions", chat_body(i, true),
                                      {{"Content-Type", "application/json"}}, [&](std::string_view c) {
                                        buf += c;
                                        return true;
                                      });
    if (r.status != 200) return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  for (const std::string& l : lines(buf)) {
    if (!l.starts_with("data: {")) continue;
    const json j = json::parse(l.substr(6));
    const json& d = j["choices"][0]["delta"];
    if (d.contains("content") && d["content"].is_string()) text += d["content"].get<std::string>();
  }
  if (buf.find("data: [DONE]") == std::string::npos) return std::nullopt;
  return text;
}

TEST_F(Up, TheDemoServesPdRestartsAKilledDecodeAndCtrlCLeavesNoChild) {
  const std::string spec = (kExamples / "demo.yaml").string();
  const uint16_t port = free_port();
  LlmdProcess up({spec, "--port", std::to_string(port)}, "up");
  ASSERT_TRUE(wait_up(up)) << up.err();

  // A streamed chat through the router, split into a prefill leg and a decode leg.
  const auto first = stream_chat(port, 0);
  ASSERT_TRUE(first) << up.err();
  EXPECT_FALSE(first->empty());
  EXPECT_EQ(metric(port, "llmd_router_pd_requests_total{outcome=\"disaggregated\"}"), 1) << up.err();

  json procs = status(spec);
  ASSERT_EQ(procs.size(), 3u) << procs.dump();
  const json* decode = find(procs, "decode-0");
  ASSERT_TRUE(decode && find(procs, "prefill-0") && find(procs, "router")) << procs.dump();
  for (const json& p : procs) EXPECT_EQ(p["state"], "healthy") << p.dump();
  const pid_t decode_pid = (*decode)["pid"];

  // Under load, the decode server is killed: it is restarted, and requests succeed again.
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::thread load([&] {
    for (int i = 1; !stop; ++i) (stream_chat(port, i) ? ok : failed)++;
  });
  ASSERT_TRUE(eventually([&] { return ok > 2; })) << up.err();
  ASSERT_EQ(::kill(decode_pid, SIGKILL), 0);
  EXPECT_TRUE(eventually([&] {
    const json now = status(spec);
    const json* d = find(now, "decode-0");
    return d && (*d)["restarts"] == 1 && (*d)["state"] == "healthy" && (*d)["pid"] != decode_pid;
  })) << up.err();
  EXPECT_NE(up.err().find("[up] decode-0 (port"), std::string::npos);
  const int ok_after_restart = ok;
  EXPECT_TRUE(eventually([&] { return ok >= ok_after_restart + 3; })) << up.err();
  stop = true;
  load.join();
  EXPECT_EQ(stream_chat(port, 1000).value_or("").empty(), false);

  // Ctrl-C: every child is gone when llmd up returns.
  procs = status(spec);
  std::vector<pid_t> children;
  for (const json& p : procs) children.push_back(p["pid"].get<pid_t>());
  ASSERT_EQ(::kill(up.pid(), SIGINT), 0);
  int st = 0;
  ASSERT_TRUE(eventually([&] { return ::waitpid(up.pid(), &st, WNOHANG) == up.pid(); }, 60s)) << up.err();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << up.err();
  for (const pid_t c : children) EXPECT_NE(::kill(c, 0), 0) << "child " << c << " still runs";
  EXPECT_NE(up.err().find("llmd up: cluster demo stopped"), std::string::npos) << up.err();
  EXPECT_FALSE(fs::exists(dir_.path() / "llmd-up" / "demo" / "control.json"));
}

TEST_F(Up, TheSimulatedFleetComesUpAndScales) {
  const std::string spec = (kExamples / "sim-fleet.yaml").string();
  const uint16_t port = free_port();
  LlmdProcess up({spec, "--port", std::to_string(port)}, "up");
  ASSERT_TRUE(wait_up(up)) << up.err();
  EXPECT_EQ(status(spec).size(), 17u);  // 16 servers and the router

  // The scaling hook: POST /scale on the control endpoint.
  const json control = json::parse(slurp(dir_.path() / "llmd-up" / "sim-fleet" / "control.json"));
  const auto scale = [&](int n) {
    return http::fetch("127.0.0.1", control["port"].get<uint16_t>(), "POST", "/scale",
                       json{{"pool", "aggregated"}, {"replicas", n}}.dump(),
                       {{"Content-Type", "application/json"}});
  };
  ASSERT_EQ(scale(18).status, 200);
  EXPECT_TRUE(eventually([&] {
    const json s = status(spec);
    const json* p = find(s, "aggregated-17");
    return s.size() == 19u && p && (*p)["state"] == "healthy";
  })) << up.err();
  const fs::path endpoints = dir_.path() / "llmd-up" / "sim-fleet" / "endpoints.txt";
  EXPECT_TRUE(eventually([&] { return lines(slurp(endpoints)).size() == 19u; }));  // a comment and 18
  ASSERT_EQ(scale(15).status, 200);
  EXPECT_TRUE(eventually([&] { return status(spec).size() == 16u; })) << up.err();
  EXPECT_EQ(lines(slurp(endpoints)).size(), 16u);
  EXPECT_EQ(scale(-1).status, 400);
  EXPECT_EQ(http::fetch("127.0.0.1", control["port"].get<uint16_t>(), "POST", "/scale",
                        R"({"pool": "prefill", "replicas": 1})", {{"Content-Type", "application/json"}})
                .status,
            400);  // the fleet has no prefill pool
  const auto bad = http::fetch("127.0.0.1", control["port"].get<uint16_t>(), "POST", "/scale", "{not json",
                               {{"Content-Type", "application/json"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("\"error\""), std::string::npos) << bad.body;  // OpenAI-style error JSON
  EXPECT_EQ(up.stop(), 0) << up.err();
}

TEST_F(Up, ABadSpecIsOneLineNamingTheField) {
  const fs::path bad = dir_.path() / "bad.yaml";
  std::ofstream(bad) << "apiVersion: llmd.dev/v1alpha1\nkind: InferenceCluster\nmetadata: {name: x}\n"
                        "spec:\n  model: {sim: true}\n  aggregated: {replicas: -1}\n";
  const RunResult r = run_llmd({"up", bad.string()}, dir_);
  EXPECT_EQ(r.exit_code, 1);
  ASSERT_EQ(lines(r.err).size(), 1u) << r.err;
  EXPECT_EQ(lines(r.err)[0], "llmd up: " + bad.string() + ": spec.aggregated.replicas: must be ≥ 0");
  const RunResult s = run_llmd({"up", bad.string(), "--status"}, dir_);
  EXPECT_EQ(s.exit_code, 1);
}

}  // namespace
}  // namespace llmd::cli_test
