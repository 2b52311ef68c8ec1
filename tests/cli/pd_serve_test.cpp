// P/D disaggregation through the real binary: a prefill `llmd serve` and a decode `llmd serve` with
// KV transfers on, driven with vLLM's two legs (kv_transfer_params). The decode leg's greedy text is
// the text one server gives, for the demo model and the 160m synthetic one; a transfer that fails
// (wrong secret, corrupted or truncated bytes) is computed on the decode server to the same text;
// blocks nobody pulls are freed after the timeout.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "cli/cli_test_util.hpp"
#include "support/free_port.hpp"
#include "support/llmd_process.hpp"

namespace llmd::cli_test {
namespace {

using json = nlohmann::json;
using test_support::free_port;
using test_support::LlmdProcess;
using test_support::quick;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Polls `pred` until true or `timeout`.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

const std::string kDemo = std::string(LLMD_SHARED_DIR) + "/models/stories260K.gguf";

json post(uint16_t port, const json& body) {
  const auto r = http::fetch("127.0.0.1", port, "POST", "/v1/completions", body.dump(),
                             {{"Content-Type", "application/json"}}, quick());
  EXPECT_EQ(r.status, 200) << r.body;
  return json::parse(r.body, nullptr, false);
}

double metric(uint16_t port, const std::string& prefix) {
  const auto r = http::fetch("127.0.0.1", port, "GET", "/metrics", {}, {}, quick());
  for (const std::string& l : lines(r.body))
    if (l.starts_with(prefix)) return std::stod(l.substr(l.rfind(' ') + 1));
  ADD_FAILURE() << "no " << prefix << " in /metrics";
  return -1;
}

// A server with KV transfers on; extra flags after the model's.
struct PdServer {
  uint16_t port = free_port();
  LlmdProcess proc;
  PdServer(const std::string& model, const std::string& secret, std::vector<std::string> extra = {})
      : proc([&] {
          std::vector<std::string> a = {
              "--model", model,       "--port", std::to_string(port),   "--num-kv-blocks",
              "96",      "--threads", "1",      "--kv-transfer-secret", secret};
          a.insert(a.end(), extra.begin(), extra.end());
          return a;
        }()) {
    EXPECT_TRUE(proc.wait_healthy(port, Clock::now() + 30s)) << proc.err();
  }
};

// The two legs, as a router (or vLLM's proxy) runs them: the prefill leg answers with where the
// blocks are, the decode leg gets that unchanged.
std::string disaggregated(const PdServer& prefill, const PdServer& decode, json body) {
  json leg = body;
  leg["max_tokens"] = 1;
  leg["kv_transfer_params"] = {{"do_remote_decode", true}};
  const json first = post(prefill.port, leg);
  EXPECT_TRUE(first.contains("kv_transfer_params")) << first.dump();
  const json& p = first["kv_transfer_params"];
  EXPECT_EQ(p["do_remote_prefill"], true);
  EXPECT_FALSE(p["remote_block_ids"].empty());
  body["kv_transfer_params"] = p;
  return post(decode.port, body)["choices"][0]["text"].get<std::string>();
}

std::vector<json> prompts(int vocab) {
  std::mt19937 rng(11);
  std::vector<json> out = {
      {{"prompt",
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun."}}};
  for (int n : {17, 48, 100}) {  // token ids: just past one block, exactly three, several
    std::vector<int> ids(n);
    for (int& t : ids) t = 3 + static_cast<int>(rng() % (vocab - 3));
    out.push_back({{"prompt", ids}});
  }
  for (json& b : out) {
    b["max_tokens"] = 24;
    b["temperature"] = 0;
    b["ignore_eos"] = true;
  }
  return out;
}

// `mode`: how the decode server pulls (--kv-transfer, given to both servers as to a cluster): tcp, shm
// (both servers are on this host) or ucx.
void expect_disaggregated_equals_one_server(const std::string& model, int vocab, const std::string& mode) {
  PdServer prefill(model, "s3cret", {"--kv-transfer", mode}),
      decode(model, "s3cret", {"--kv-transfer", mode});
  for (json body : prompts(vocab)) {
    json ref = body;
    ref["cache_salt"] = "reference";  // its blocks are not the legs' prefix hits
    const std::string expected = post(prefill.port, ref)["choices"][0]["text"];
    EXPECT_EQ(disaggregated(prefill, decode, body), expected) << body.dump();
  }
  EXPECT_GT(metric(decode.port, "llmd:kv_pulled_blocks_total"), 0);
  EXPECT_EQ(metric(decode.port, "llmd:kv_pull_failures_total"), 0);
  EXPECT_GT(metric(decode.port, "llmd:kv_transfer_bytes_total"), 0);
  EXPECT_EQ(metric(decode.port,
                   "llmd:kv_pulls_total{model_name=\"" + model + "\",engine=\"0\",backend=\"" + mode + "\"}"),
            double(prompts(vocab).size()));
  // Every pin released by the decode side's RELEASE, none left to the timeout.
  EXPECT_TRUE(eventually([&] { return metric(prefill.port, "llmd:kv_pinned_blocks") == 0; }));
  const auto m = http::fetch("127.0.0.1", prefill.port, "GET", "/metrics", {}, {}, quick()).body;
  EXPECT_NE(m.find("outcome=\"released\"} " + std::to_string(prompts(vocab).size())), std::string::npos) << m;
}

TEST(PdServe, DisaggregatedGreedyTextIsOneServersOnTheDemoModel) {
  for (const char* mode : {"tcp", "shm", "ucx"}) {
    SCOPED_TRACE(mode);
    expect_disaggregated_equals_one_server(kDemo, 512, mode);
  }
}

TEST(PdServe, DisaggregatedGreedyTextIsOneServersOnThe160mModel) {
  TempDir dir;
  const std::string m = (dir.path() / "160m.gguf").string();
  const RunResult r = run_llmd({"model", "synth", "--preset", "160m", "--dtype", "q8_0", "--seed", "5",
                                "--tokenizer-from", kDemo, "--out", m},
                               dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* mode : {"tcp", "shm", "ucx"}) {
    SCOPED_TRACE(mode);
    expect_disaggregated_equals_one_server(m, 512, mode);
  }
}

// llm-d's sidecar mode: the EPP names the prefill server in x-prefiller-host-port and sends the
// client's request to the decode server, which runs the prefill leg there itself.
TEST(PdServe, TheSidecarHeaderRunsThePrefillLegOnTheNamedServer) {
  PdServer prefill(kDemo, "s3cret"), decode(kDemo, "s3cret");
  const json body = prompts(512)[0];
  json ref = body;
  ref["cache_salt"] = "reference";
  const std::string expected = post(prefill.port, ref)["choices"][0]["text"];
  const auto r = http::fetch("127.0.0.1", decode.port, "POST", "/v1/completions", body.dump(),
                             {{"Content-Type", "application/json"},
                              {"x-prefiller-host-port", "127.0.0.1:" + std::to_string(prefill.port)}},
                             quick());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["choices"][0]["text"], expected);
  EXPECT_GT(metric(decode.port, "llmd:kv_pulled_blocks_total"), 0);
  EXPECT_TRUE(eventually([&] { return metric(prefill.port, "llmd:kv_pinned_blocks") == 0; }));
  const auto m = http::fetch("127.0.0.1", prefill.port, "GET", "/metrics", {}, {}, quick());
  EXPECT_NE(m.body.find("outcome=\"released\"} 1"), std::string::npos) << m.body;
  // A header naming nothing usable (no port, a port out of range, a server that does not listen):
  // the request is served here whole, with the same text.
  for (const std::string& bad :
       std::vector<std::string>{"nonsense", "127.0.0.1:99999", "127.0.0.1:" + std::to_string(free_port())}) {
    const auto r2 =
        http::fetch("127.0.0.1", decode.port, "POST", "/v1/completions", body.dump(),
                    {{"Content-Type", "application/json"}, {"x-prefiller-host-port", bad}}, quick());
    ASSERT_EQ(r2.status, 200) << bad << r2.body;
    EXPECT_EQ(json::parse(r2.body)["choices"][0]["text"], expected) << bad;
  }
}

TEST(PdServe, AFailedTransferIsComputedOnTheDecodeServer) {
  const json body = prompts(512)[2];
  json ref = body;
  ref["cache_salt"] = "reference";
  for (const std::string mode : {"tcp", "shm", "ucx"})
    for (const std::vector<std::string>& fault :
         {std::vector<std::string>{"--kv-transfer-fault", "corrupt:1"},
          std::vector<std::string>{"--kv-transfer-fault", "truncate:1"}, std::vector<std::string>{}}) {
      SCOPED_TRACE(mode + (fault.empty() ? " wrong secret" : " " + fault[1]));
      std::vector<std::string> prefill_flags = fault;
      prefill_flags.insert(prefill_flags.end(), {"--kv-transfer", mode});
      PdServer prefill(kDemo, "s3cret", prefill_flags);
      // No fault: a wrong secret.
      PdServer decode(kDemo, fault.empty() ? "another-secret" : "s3cret", {"--kv-transfer", mode});
      const std::string expected = post(prefill.port, ref)["choices"][0]["text"];
      EXPECT_EQ(disaggregated(prefill, decode, body), expected);
      EXPECT_EQ(metric(decode.port, "llmd:kv_pulled_blocks_total"), 0);
      EXPECT_EQ(metric(decode.port, "llmd:kv_pull_failures_total"), 1);
      // Why, by reason: the checksum (corrupt), the connection cut (truncate), the secret.
      const std::string reason = fault.empty()                     ? "auth"
                                 : fault[1].starts_with("corrupt") ? "checksum"
                                                                   : "truncated";
      EXPECT_EQ(metric(decode.port, "llmd:kv_transfer_failures_total{model_name=\"" + kDemo +
                                        "\",engine=\"0\",reason=\"" + reason + "\"}"),
                1);
    }
}

TEST(PdServe, BlocksNobodyPullsAreFreedAfterTheTimeout) {
  PdServer prefill(kDemo, "s3cret", {"--kv-transfer-timeout", "0.3"});
  json leg = prompts(512)[3];
  leg["max_tokens"] = 1;
  leg["kv_transfer_params"] = {{"do_remote_decode", true}};
  const auto t0 = Clock::now();
  const json first = post(prefill.port, leg);
  EXPECT_FALSE(first["kv_transfer_params"]["remote_block_ids"].empty());
  EXPECT_GT(metric(prefill.port, "vllm:kv_cache_usage_perc"), 0);
  EXPECT_TRUE(eventually([&] { return metric(prefill.port, "vllm:kv_cache_usage_perc") == 0; }, 3s));
  EXPECT_GE(Clock::now() - t0, 300ms);
  const auto r = http::fetch("127.0.0.1", prefill.port, "GET", "/metrics", {}, {}, quick());
  EXPECT_NE(r.body.find("outcome=\"expired\"} 1"), std::string::npos) << r.body;
}

TEST(PdServe, BadTransferFlagsAreOneErrorLine) {
  const TempDir dir;
  const std::vector<std::string> base = {"serve", "--model", kDemo, "--port", "0", "--kv-transfer-secret",
                                         "s"};
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"--kv-transfer", "rdma"}, "--kv-transfer"},
      {{"--kv-transfer-timeout", "0"}, "--kv-transfer-timeout"},
      {{"--kv-transfer-fault", "melt:1"}, "--kv-transfer-fault"},
      {{"--kv-transfer-fault", "corrupt:x"}, "--kv-transfer-fault"},
      {{"--kv-transfer-host", "not an address"}, "not an address"},
      {{"--kv-transfer-allow", "10.0.0.0/8,server-a"}, "--kv-transfer-allow: 'server-a'"},
  };
  for (const auto& [extra, want] : cases) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    expect_one_error_line(run_llmd(args, dir), want);
  }
}

TEST(PdServe, APrefillLegOnAServerWithoutTransfersIsRefused) {
  const uint16_t port = free_port();
  LlmdProcess s({"--model", kDemo, "--port", std::to_string(port)});
  ASSERT_TRUE(s.wait_healthy(port, Clock::now() + 30s));
  json leg = prompts(512)[0];
  leg["kv_transfer_params"] = {{"do_remote_decode", true}};
  const auto r = http::fetch("127.0.0.1", port, "POST", "/v1/completions", leg.dump(),
                             {{"Content-Type", "application/json"}}, quick());
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("--kv-transfer-secret"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace llmd::cli_test
