// `llmd route`'s proxy against real `llmd serve --sim` processes on loopback: streaming passes
// through, bad input gets 400, no endpoint gets 503 at once, a refused connection is retried on
// the next endpoint, an endpoint dying mid-stream ends the client's stream with an error event
// while the router stays up, and malformed metrics are counted.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/http_server.hpp"
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
using namespace std::chrono_literals;

using test_support::quick;

struct SimServer {
  uint16_t port = free_port();
  LlmdProcess proc;
  explicit SimServer(std::vector<std::string> extra = {})
      : proc([&] {
          std::vector<std::string> a = {"--sim", "--port", std::to_string(port)};
          a.insert(a.end(), extra.begin(), extra.end());
          return a;
        }()) {
    EXPECT_TRUE(proc.wait_healthy(port, Clock::now() + 20s)) << proc.err();
  }
  std::string spec() const { return "127.0.0.1:" + std::to_string(port); }
};

std::unique_ptr<Router> make_router(RouterConfig rc = {},
                                    const EndpointPickerConfig& epp = default_endpoint_picker_config()) {
  rc.http.port = 0;
  PromptKeyer keyer;
  keyer.fingerprint = "sim:vocab32000";  // what `llmd serve --sim` without a model keys with
  auto r = std::make_unique<Router>(rc, epp, keyer);
  r->start();
  return r;
}

// Waits until `n` endpoints are fit (scraped).
bool wait_fit(Router& r, std::size_t n, Clock::duration limit = 10s) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    std::size_t fit = 0;
    for (const auto& e : *r.endpoints().snapshot()) fit += e->fit(steady_now_ns(), std::chrono::seconds(2));
    if (fit >= n) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

http::ClientResponse post(uint16_t port, const std::string& body, http::Headers h = {}) {
  h.add("Content-Type", "application/json");
  return http::fetch("127.0.0.1", port, "POST", "/v1/completions", body, h, quick());
}

// The sum of a metric's samples whose labels contain `labels`.
double metric(Router& r, std::string_view name, std::string_view labels = "") {
  double sum = 0;
  prometheus::parse(r.registry().render(), [&](const prometheus::Sample& s) {
    if (s.name == name && s.labels.find(labels) != std::string_view::npos) sum += s.value;
  });
  return sum;
}

TEST(Proxy, StreamsThroughTwoServersAndPassesTheRequestId) {
  SimServer a, b;
  auto r = make_router();
  r->endpoints().set(parse_endpoint_list(a.spec() + "," + b.spec()));
  ASSERT_TRUE(wait_fit(*r, 2));
  std::string body;
  http::Headers h;
  h.add("Content-Type", "application/json");
  h.add("x-request-id", "req-123");
  const http::ClientResponse resp = http::fetch_stream(
      "127.0.0.1", r->port(), "POST", "/v1/completions",
      R"({"prompt":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17],"max_tokens":4,"stream":true})", h,
      [&](std::string_view c) {
        body += c;
        return true;
      },
      quick());
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.headers.get_or("x-request-id", ""), "req-123");
  EXPECT_EQ(resp.headers.get_or("content-type", "").substr(0, 17), "text/event-stream");
  // The server's own fields are relayed; its framing is not (the router frames the response itself).
  EXPECT_EQ(resp.headers.get_or("cache-control", ""), "no-cache");
  int framing = 0, types = 0;
  for (const auto& [k, v] : resp.headers) {
    framing += http::iequals(k, "transfer-encoding") || http::iequals(k, "content-length");
    types += http::iequals(k, "content-type");
  }
  EXPECT_EQ(framing, 1);
  EXPECT_EQ(types, 1);
  EXPECT_NE(body.find("data: [DONE]"), std::string::npos) << body;
  // Non-streaming, and the model list through the router.
  const auto plain = post(r->port(), R"({"prompt":"Once upon a time","max_tokens":3})");
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(json::parse(plain.body)["usage"]["completion_tokens"], 3);
  EXPECT_EQ(http::fetch("127.0.0.1", r->port(), "GET", "/v1/models", {}, {}, quick()).status, 200);
  EXPECT_EQ(metric(*r, "llmd_router_decisions_total"), 2);
}

TEST(Proxy, BadBodiesGet400AndNoEndpointGets503AtOnce) {
  auto r = make_router();
  r->endpoints().set(parse_endpoint_list("127.0.0.1:" + std::to_string(free_port())));  // nobody listens
  for (const char* bad : {"{bad", "[1,2]", R"({"max_tokens":3})", R"({"prompt":{"x":1}})"}) {
    const auto resp = post(r->port(), bad);
    EXPECT_EQ(resp.status, 400) << bad;
    EXPECT_TRUE(json::parse(resp.body, nullptr, false)["error"].contains("message")) << resp.body;
  }
  const auto t0 = Clock::now();
  const auto resp = post(r->port(), R"({"prompt":"hi","max_tokens":3})");
  EXPECT_EQ(resp.status, 503) << resp.body;
  EXPECT_LT(Clock::now() - t0, 500ms);
  EXPECT_EQ(http::fetch("127.0.0.1", r->port(), "GET", "/health", {}, {}, quick()).status, 200);
}

TEST(Proxy, ConnectFailureIsRetriedOnTheNextEndpoint) {
  SimServer live;
  RouterConfig rc;
  rc.scraper.interval = 60s;  // the test sets the endpoints' state itself
  auto r = make_router(rc);
  const uint16_t dead = free_port();
  r->endpoints().set(parse_endpoint_list(live.spec() + ",127.0.0.1:" + std::to_string(dead)));
  ASSERT_TRUE(wait_fit(*r, 1));
  for (int i = 0; i < 6; ++i) {
    for (const auto& e : *r->endpoints().snapshot()) {  // both look fit and idle: ties at random
      e->scraped_at = steady_now_ns();
      e->reachable = true;
    }
    const auto resp = post(r->port(), R"({"prompt":"hi there","max_tokens":2})");
    EXPECT_EQ(resp.status, 200) << resp.body;
    EXPECT_EQ(resp.headers.get_or("x-llmd-endpoint", ""), live.spec());
  }
  EXPECT_GT(metric(*r, "llmd_router_proxy_errors_total", "kind=\"connect\""), 0);
}

TEST(Proxy, EndpointDyingMidStreamEndsTheStreamWithAnErrorAndTheRouterStaysUp) {
  SimServer slow({"--sim-decode-ms-per-step", "40"});
  SimServer other;
  auto r = make_router();
  r->endpoints().set(parse_endpoint_list(slow.spec()));
  ASSERT_TRUE(wait_fit(*r, 1));
  std::string body;
  bool killed = false;
  http::Headers h;
  h.add("Content-Type", "application/json");
  const http::ClientResponse resp = http::fetch_stream(
      "127.0.0.1", r->port(), "POST", "/v1/completions",
      R"({"prompt":"once","max_tokens":200,"stream":true})", h,
      [&](std::string_view c) {
        body += c;
        if (!killed && body.find("data: {") != std::string::npos) {
          kill(slow.proc.pid(), SIGKILL);
          killed = true;
        }
        return true;
      },
      quick());
  ASSERT_TRUE(killed) << body;
  EXPECT_EQ(resp.status, 200);
  EXPECT_NE(body.find("\"error\""), std::string::npos) << body;  // a clean error event ...
  EXPECT_EQ(body.find("[DONE]"), std::string::npos);             // ... not a finished answer
  // The router is up and serves the next request elsewhere.
  r->endpoints().set(parse_endpoint_list(other.spec()));
  ASSERT_TRUE(wait_fit(*r, 1));
  EXPECT_EQ(post(r->port(), R"({"prompt":"hi","max_tokens":2})").status, 200);
}

TEST(Proxy, ApiKeyIsRequiredWhenSet) {
  SimServer a;
  RouterConfig rc;
  rc.api_key = "sekret";
  auto r = make_router(rc);
  r->endpoints().set(parse_endpoint_list(a.spec()));
  ASSERT_TRUE(wait_fit(*r, 1));
  EXPECT_EQ(post(r->port(), R"({"prompt":"hi","max_tokens":2})").status, 401);
  http::Headers h;
  h.add("Authorization", "Bearer sekret");
  EXPECT_EQ(post(r->port(), R"({"prompt":"hi","max_tokens":2})", h).status, 200);
  EXPECT_EQ(http::fetch("127.0.0.1", r->port(), "GET", "/health", {}, {}, quick()).status, 200);
}

// The servers' KV events feed precise-prefix-cache-scorer: the keys the router computes from a
// prompt are the keys the server publishes, so a prompt sharing a cached prefix goes to the
// server that holds it, predicted as a full hit.
TEST(Proxy, PreciseRoutingFollowsTheServersKvEvents) {
  const uint16_t ev_a = free_port(), ev_b = free_port();
  SimServer a({"--kv-events-endpoint", "tcp://127.0.0.1:" + std::to_string(ev_a)});
  SimServer b({"--kv-events-endpoint", "tcp://127.0.0.1:" + std::to_string(ev_b)});
  const EndpointPickerConfig epp = parse_endpoint_picker_config(R"(
plugins:
- type: precise-prefix-cache-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: precise-prefix-cache-scorer, weight: 1}, {pluginRef: max-score-picker}]
)");
  auto r = make_router({}, epp);
  r->endpoints().set(parse_endpoint_list(a.spec() + ";kv-events=tcp://127.0.0.1:" + std::to_string(ev_a) +
                                         "," + b.spec() +
                                         ";kv-events=tcp://127.0.0.1:" + std::to_string(ev_b)));
  ASSERT_TRUE(wait_fit(*r, 2));
  // ZMQ's slow joiner: warm each server up with its own prompt until its blocks show in the index.
  json prompt = json::array();
  for (int i = 0; i < 64; ++i) prompt.push_back(100 + i);  // four 16-token blocks
  const auto deadline = Clock::now() + 10s;
  std::string holder;
  while (r->kv_index().entries() < 4 && Clock::now() < deadline) {
    json body = {{"prompt", prompt}, {"max_tokens", 1}};
    const auto resp = post(r->port(), body.dump());
    ASSERT_EQ(resp.status, 200) << resp.body;
    holder = resp.headers.get_or("x-llmd-endpoint", "");
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_GE(r->kv_index().entries(), 4u) << "no KV events reached the index";
  // The same 64 tokens plus a new question: every time to the holder.
  json longer = prompt;
  for (int i = 0; i < 20; ++i) longer.push_back(7000 + i);
  const double hit_sum0 = metric(*r, "llmd_router_prefix_hit_ratio_predicted_sum");
  for (int i = 0; i < 5; ++i) {
    const auto resp = post(r->port(), json{{"prompt", longer}, {"max_tokens", 1}}.dump());
    ASSERT_EQ(resp.status, 200);
    EXPECT_EQ(resp.headers.get_or("x-llmd-endpoint", ""), holder);
  }
  EXPECT_EQ(r->kv_events().counters().malformed, 0u);
  // At least 4 of the prompt's 5 full blocks were predicted cached each time; the fifth becomes a
  // hit too once the first of these requests stored it and its event arrived.
  const double hits = metric(*r, "llmd_router_prefix_hit_ratio_predicted_sum") - hit_sum0;
  EXPECT_GE(hits, 5 * 0.8 - 1e-9);
  EXPECT_LE(hits, 5.0 + 1e-9);
}

TEST(Proxy, MalformedMetricsAreCountedAndLeaveTheEndpointUnfit) {
  http::Server junk;
  junk.route("GET", "/metrics", [](http::Request&, http::Response& res) -> asio::awaitable<void> {
    co_await res.send(200, "text/plain", "this is { not prometheus\nvllm:num_requests_waiting{ 3\n");
  });
  junk.start();
  auto r = make_router();
  r->endpoints().set(parse_endpoint_list("127.0.0.1:" + std::to_string(junk.port())));
  const auto deadline = Clock::now() + 5s;
  while (metric(*r, "llmd_router_metrics_malformed_total") < 2 && Clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_GE(metric(*r, "llmd_router_metrics_malformed_total"), 2);
  EXPECT_EQ(post(r->port(), R"({"prompt":"hi","max_tokens":2})").status, 503);
}

}  // namespace
}  // namespace llmd::router
