// `llmd serve --sim`: the real binary, real sockets, no model file. Every server started here is a
// child process killed (SIGTERM, then SIGKILL) when its owner goes out of scope, failure or not,
// and dies with the test process too (PR_SET_PDEATHSIG).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "support/free_port.hpp"

#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_test_util.hpp"
#include "common/http_client.hpp"
#include "support/llmd_process.hpp"

namespace llmd::cli_test {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using test_support::quick;

using llmd::test_support::free_port;

using Server = test_support::LlmdProcess;

json post_json(uint16_t port, const std::string& path, const json& body) {
  const http::ClientResponse r = http::fetch("127.0.0.1", port, "POST", path, body.dump(),
                                             {{"Content-Type", "application/json"}}, quick());
  EXPECT_EQ(r.status, 200) << r.body;
  return json::parse(r.body, nullptr, false);
}

double generation_tokens_total(uint16_t port) {
  const http::ClientResponse r = http::fetch("127.0.0.1", port, "GET", "/metrics", {}, {}, quick());
  EXPECT_EQ(r.status, 200);
  for (const std::string& l : lines(r.body))
    if (l.starts_with("vllm:generation_tokens_total")) return std::stod(l.substr(l.rfind(' ') + 1));
  ADD_FAILURE() << "no vllm:generation_tokens_total in /metrics:\n" << r.body;
  return -1;
}

constexpr const char* kPrompt = "Once upon a time there was a little fox who lived in the forest";

TEST(ServeSim, AnswersTheOpenAiApiWithoutAModel) {
  const uint16_t port = free_port();
  Server srv({"--sim", "--port", std::to_string(port), "--sim-decode-ms-per-step", "1"});
  ASSERT_TRUE(srv.wait_healthy(port, Clock::now() + 10s)) << srv.err();

  const http::ClientResponse models = http::fetch("127.0.0.1", port, "GET", "/v1/models", {}, {}, quick());
  ASSERT_EQ(models.status, 200);
  const json mj = json::parse(models.body);
  ASSERT_EQ(mj["data"].size(), 1u) << models.body;
  EXPECT_EQ(mj["data"][0]["id"], "sim-model");

  const double gen_before = generation_tokens_total(port);
  const json tk = post_json(port, "/tokenize", {{"prompt", kPrompt}});
  const int64_t n_prompt = tk["count"].get<int64_t>();
  EXPECT_GT(n_prompt, 5);

  const json c =
      post_json(port, "/v1/completions", {{"model", "sim-model"}, {"prompt", kPrompt}, {"max_tokens", 12}});
  ASSERT_FALSE(c.is_discarded());
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["finish_reason"], "length") << c.dump();
  EXPECT_FALSE(c["choices"][0]["text"].get<std::string>().empty()) << c.dump();
  EXPECT_EQ(c["usage"]["prompt_tokens"], n_prompt);
  EXPECT_EQ(c["usage"]["completion_tokens"], 12);
  EXPECT_EQ(c["usage"]["total_tokens"], n_prompt + 12);
  // Deterministic: the same prompt gives the same text (the second run hits the prefix cache).
  const json c2 =
      post_json(port, "/v1/completions", {{"model", "sim-model"}, {"prompt", kPrompt}, {"max_tokens", 12}});
  EXPECT_EQ(c2["choices"][0]["text"], c["choices"][0]["text"]);

  // Chat: ChatML template over the self-made vocab.
  const json chat =
      post_json(port, "/v1/chat/completions",
                {{"model", "sim-model"},
                 {"messages", json::array({{{"role", "user"}, {"content", "Tell me a story"}}})},
                 {"max_tokens", 5}});
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "length") << chat.dump();
  EXPECT_EQ(chat["usage"]["completion_tokens"], 5);

  // Streaming: SSE chunks, then the finish reason, then [DONE].
  std::string sse;
  const json sreq = {{"model", "sim-model"}, {"prompt", kPrompt}, {"max_tokens", 8}, {"stream", true}};
  const http::ClientResponse sr = http::fetch_stream(
      "127.0.0.1", port, "POST", "/v1/completions", sreq.dump(), {{"Content-Type", "application/json"}},
      [&](std::string_view chunk) {
        sse.append(chunk);
        return true;
      },
      quick());
  ASSERT_EQ(sr.status, 200) << sse;
  std::string streamed_text, finish;
  int events = 0;
  bool done = false;
  for (const std::string& l : lines(sse)) {
    if (!l.starts_with("data: ")) continue;
    const std::string data = l.substr(6);
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    const json ev = json::parse(data);
    ++events;
    if (!ev["choices"].empty()) {
      streamed_text += ev["choices"][0].value("text", "");
      if (ev["choices"][0]["finish_reason"].is_string()) finish = ev["choices"][0]["finish_reason"];
    }
  }
  EXPECT_TRUE(done) << sse;
  EXPECT_GE(events, 2) << sse;
  EXPECT_EQ(finish, "length") << sse;
  EXPECT_FALSE(streamed_text.empty()) << sse;

  // The engine counts a request's tokens as it finishes it, which can be just after the client has
  // read the last byte: the counter is eventually exact, so wait for it (bounded).
  double gen_after = generation_tokens_total(port);
  for (const auto until = Clock::now() + 2s;
       gen_after - gen_before < 12 + 12 + 5 + 8 && Clock::now() < until;) {
    std::this_thread::sleep_for(5ms);
    gen_after = generation_tokens_total(port);
  }
  EXPECT_GE(gen_after - gen_before, 12 + 12 + 5 + 8) << gen_before << " -> " << gen_after;

  EXPECT_EQ(srv.stop(), 0) << srv.err();
}

TEST(ServeSim, FollowsTheLatencyModel) {
  const uint16_t port = free_port();
  Server srv({"--sim", "--port", std::to_string(port), "--sim-decode-ms-per-step", "20",
              "--sim-prefill-ms-per-token", "0"});
  ASSERT_TRUE(srv.wait_healthy(port, Clock::now() + 10s)) << srv.err();
  const json req = {{"model", "sim-model"}, {"prompt", kPrompt}, {"max_tokens", 10}};
  post_json(port, "/v1/completions", req);  // warm-up (connection paths, first-step setup)
  const auto t0 = Clock::now();
  const json c = post_json(port, "/v1/completions", req);
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  EXPECT_EQ(c["usage"]["completion_tokens"], 10);
  std::printf("10-token completion at 20 ms/decode step: %.1f ms\n", ms);
  // The prefill step (0 ms) yields the first token; each of the other 9 is a 20 ms decode step.
  EXPECT_GE(ms, 9 * 20.0);
  EXPECT_LT(ms, 600.0);
}

TEST(ServeSim, ThirtyTwoServersOnOneMachine) {
  constexpr int kServers = 32;
  std::vector<std::unique_ptr<Server>> fleet;
  const auto t0 = Clock::now();
  for (int i = 0; i < kServers; ++i)
    fleet.push_back(std::make_unique<Server>(
        std::vector<std::string>{"--sim", "--port", "0", "--served-model-name", "sim-" + std::to_string(i),
                                 "--sim-seed", std::to_string(i)}));
  std::vector<uint16_t> ports;
  const auto deadline = t0 + 10s;
  for (auto& s : fleet) {
    const std::optional<uint16_t> p = s->wait_healthy(0, deadline);
    ASSERT_TRUE(p) << "a server did not become healthy within 10 s: " << s->err();
    ports.push_back(*p);
  }
  const double startup_s = std::chrono::duration<double>(Clock::now() - t0).count();

  for (int i = 0; i < kServers; ++i) {
    const json c = post_json(ports[i], "/v1/completions",
                             {{"model", "sim-" + std::to_string(i)}, {"prompt", kPrompt}, {"max_tokens", 4}});
    EXPECT_EQ(c["usage"]["completion_tokens"], 4) << "server " << i << ": " << c.dump();
  }

  int64_t rss = 0, max_rss = 0, threads = 0;
  for (auto& s : fleet) {
    const int64_t r = s->rss_kib();
    rss += r;
    max_rss = std::max(max_rss, r);
    threads += s->threads();
  }
  // Idle: one second with no requests should cost next to no CPU.
  int64_t ticks0 = 0, ticks1 = 0;
  for (auto& s : fleet) ticks0 += s->cpu_ticks();
  std::this_thread::sleep_for(1s);
  for (auto& s : fleet) ticks1 += s->cpu_ticks();
  const double idle_cpu_pct =
      100.0 * static_cast<double>(ticks1 - ticks0) / static_cast<double>(sysconf(_SC_CLK_TCK));

  std::printf(
      "%d sim servers: all healthy after %.2f s; RSS total %.1f MiB (max %.1f MiB per server); %lld threads; "
      "idle CPU over 1 s: %.1f%% of one core (all servers together)\n",
      kServers, startup_s, rss / 1024.0, max_rss / 1024.0, static_cast<long long>(threads), idle_cpu_pct);
  EXPECT_LT(max_rss, 60 * 1024);
  EXPECT_LT(idle_cpu_pct, 10.0);
  for (auto& s : fleet) EXPECT_EQ(s->stop(), 0) << s->err();
}

TEST(ServeSim, BadFlagsAreOneErrorLine) {
  const TempDir dir;
  expect_one_error_line(run_llmd({"serve"}, dir), "--model");
  expect_one_error_line(run_llmd({"serve", "--sim-vocab", "1000"}, dir), "--sim");
  expect_one_error_line(run_llmd({"serve", "--model", kStoriesModel, "--sim-vocab", "1000"}, dir),
                        "--sim-vocab");
  // A vocab without room for the fixed tokens is refused before anything listens.
  const RunResult small = run_llmd({"serve", "--sim", "--port", "0", "--sim-vocab", "100"}, dir);
  EXPECT_NE(small.exit_code, 0);
  EXPECT_EQ(lines(small.err).size(), 1u) << small.err;
  EXPECT_TRUE(small.err.starts_with("llmd: error:")) << small.err;
}

// SIGTERM drains: a stream in progress runs to its end, new connections are refused, and the
// server then exits 0.
TEST(ServeSim, SigtermLetsTheRequestsInProgressFinish) {
  const uint16_t port = free_port();
  Server s(
      {"--sim", "--port", std::to_string(port), "--sim-decode-ms-per-step", "20", "--drain-timeout", "20"});
  ASSERT_TRUE(s.wait_healthy(port, Clock::now() + 30s)) << s.err();
  std::string streamed;
  int status = 0;
  std::thread client([&] {
    const json body = {{"prompt", kPrompt}, {"max_tokens", 40}, {"stream", true}, {"ignore_eos", true}};
    status = http::fetch_stream("127.0.0.1", port, "POST", "/v1/completions", body.dump(),
                                {{"Content-Type", "application/json"}},
                                [&](std::string_view c) {
                                  streamed += c;
                                  return true;
                                })
                 .status;
  });
  // Signalled once the stream is under way (40 steps of 20 ms: about 0.8 s to go).
  const auto until = Clock::now() + 10s;
  while (streamed.find("data: ") == std::string::npos && Clock::now() < until)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(::kill(s.pid(), SIGTERM), 0);
  std::this_thread::sleep_for(100ms);
  EXPECT_THROW(http::fetch("127.0.0.1", port, "GET", "/health", {}, {}, quick()),
               Error);  // no longer accepting
  client.join();
  EXPECT_EQ(status, 200);
  EXPECT_NE(streamed.find("data: [DONE]"), std::string::npos) << streamed;
  int chunks = 0;
  for (const std::string& l : lines(streamed)) chunks += l.starts_with("data: {") ? 1 : 0;
  EXPECT_GE(chunks, 40);
  EXPECT_EQ(s.stop(), 0) << s.err();
}

}  // namespace
}  // namespace llmd::cli_test
