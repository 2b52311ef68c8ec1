// P/D through `llmd route`: a prefill and a decode `llmd serve` of the demo model with KV transfers
// on, and a router whose EndpointPickerConfig disaggregates every request. The router runs the
// prefill leg, then streams the decode leg to the client; the text is one server's. With the
// prefill server gone, requests are served aggregated by the decode server, still correctly.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/prometheus_text.hpp"
#include "router/router.hpp"
#include "support/free_port.hpp"
#include "support/llmd_process.hpp"

namespace llmd::router {
namespace {

using json = nlohmann::json;
using test_support::Clock;
using test_support::free_port;
using test_support::LlmdProcess;
using test_support::quick;
using namespace std::chrono_literals;

const std::string kDemo = std::string(LLMD_SHARED_DIR) + "/models/stories260K.gguf";

struct ModelServer {
  uint16_t port = free_port();
  LlmdProcess proc;
  explicit ModelServer(const std::string& role)
      : proc({"--model", kDemo, "--port", std::to_string(port), "--role", role, "--num-kv-blocks", "96",
              "--threads", "1", "--kv-transfer-secret", "pd-test"}) {
    EXPECT_TRUE(proc.wait_healthy(port, Clock::now() + 30s)) << proc.err();
  }
};

double metric(const std::string& text, std::string_view name, std::string_view labels = "") {
  double sum = 0;
  prometheus::parse(text, [&](const prometheus::Sample& s) {
    if (s.name == name && s.labels.find(labels) != std::string_view::npos) sum += s.value;
  });
  return sum;
}
double server_metric(uint16_t port, std::string_view name) {
  return metric(http::fetch("127.0.0.1", port, "GET", "/metrics", {}, {}, quick()).body, name);
}

// The text of a streamed completion (SSE events concatenated).
std::string stream_text(uint16_t port, json body) {
  body["stream"] = true;
  std::string sse;
  const auto r = http::fetch_stream(
      "127.0.0.1", port, "POST", "/v1/completions", body.dump(), {{"Content-Type", "application/json"}},
      [&](std::string_view c) {
        sse += c;
        return true;
      },
      quick());
  EXPECT_EQ(r.status, 200) << sse;
  std::string text;
  for (std::size_t at = 0; (at = sse.find("data: {", at)) != std::string::npos;) {
    const std::size_t end = sse.find("\n\n", at);
    const json e = json::parse(sse.substr(at + 6, end - at - 6), nullptr, false);
    if (e.contains("choices") && !e["choices"].empty()) text += e["choices"][0].value("text", "");
    at = end;
  }
  EXPECT_NE(sse.find("data: [DONE]"), std::string::npos) << sse;
  return text;
}

constexpr const char* kAlwaysDisaggregate = R"(
plugins:
- type: prefill-filter
- type: decode-filter
- type: queue-scorer
- type: always-disagg-pd-decider
- type: disagg-profile-handler
  parameters:
    deciders: {prefill: always-disagg-pd-decider}
schedulingProfiles:
- name: prefill
  plugins: [{pluginRef: prefill-filter}, {pluginRef: queue-scorer}]
- name: decode
  plugins: [{pluginRef: decode-filter}, {pluginRef: queue-scorer}]
)";

TEST(PdProxy, TheRouterRunsThePrefillLegAndStreamsTheDecodeLeg) {
  ModelServer prefill("prefill"), decode("decode");
  RouterConfig rc;
  rc.http.port = 0;
  Router r(rc, parse_endpoint_picker_config(kAlwaysDisaggregate), PromptKeyer{});
  r.start();
  r.endpoints().set(parse_endpoint_list("127.0.0.1:" + std::to_string(prefill.port) +
                                        ";role=prefill,127.0.0.1:" + std::to_string(decode.port) +
                                        ";role=decode"));
  const auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    std::size_t fit = 0;
    for (const auto& e : *r.endpoints().snapshot()) fit += e->fit(steady_now_ns(), 2s);
    if (fit == 2) break;
    std::this_thread::sleep_for(10ms);
  }

  const json body = {
      {"prompt", "Once upon a time, there was a little girl named Lily. She loved to play outside."},
      {"max_tokens", 24},
      {"temperature", 0},
      {"ignore_eos", true}};
  json ref = body;
  ref["cache_salt"] = "reference";
  const std::string expected =
      json::parse(http::fetch("127.0.0.1", decode.port, "POST", "/v1/completions", ref.dump(),
                              {{"Content-Type", "application/json"}}, quick())
                      .body)["choices"][0]["text"];

  EXPECT_EQ(stream_text(r.port(), body), expected);
  const std::string m = r.registry().render();
  EXPECT_EQ(metric(m, "llmd_router_pd_requests_total", "outcome=\"disaggregated\""), 1) << m;
  EXPECT_EQ(metric(m, "llmd_router_decisions_total", "profile=\"prefill\""), 1);
  EXPECT_EQ(metric(m, "llmd_router_decisions_total", "profile=\"decode\""), 1);
  EXPECT_GT(server_metric(decode.port, "llmd:kv_pulled_blocks_total"), 0);
  EXPECT_EQ(server_metric(decode.port, "llmd:kv_pull_failures_total"), 0);

  // The prefill server dies: the decode server serves the next requests whole, correctly.
  prefill.proc.stop();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(stream_text(r.port(), body), expected);
  EXPECT_EQ(metric(r.registry().render(), "llmd_router_pd_requests_total", "outcome=\"disaggregated\""), 1);
}

}  // namespace
}  // namespace llmd::router
