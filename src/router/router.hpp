#pragma once
// `llmd route` in HTTP proxy mode: OpenAI requests in, each scheduled onto an endpoint and
// forwarded, the endpoint's answer streamed back chunk by chunk without buffering. A connect
// failure is retried on the next-ranked endpoint (never once a byte reached the client); an
// endpoint dying mid-stream ends the client's stream with an error event (SSE) or a cut
// connection, never a response that looks complete. Its own /health and /metrics.
//
// Threading: the HTTP server's io threads run the handlers and the scrapers; scheduling takes the
// scheduler's lock; endpoint state is atomics.
#include <chrono>
#include <memory>
#include <string>

#include "common/http_server.hpp"
#include "common/metrics.hpp"
#include "router/config.hpp"
#include "router/endpoint_set.hpp"
#include "router/kv_event_subscriber.hpp"
#include "router/kv_index.hpp"
#include "router/request.hpp"
#include "router/router_metrics.hpp"
#include "router/scheduler.hpp"
#include "router/scraper.hpp"

namespace llmd::router {

struct RouterConfig {
  static constexpr int kDefaultMaxAttempts = 3;
  http::ServerConfig http;  // 127.0.0.1 unless told otherwise
  std::string api_key;      // clients must send "Authorization: Bearer KEY" when set
  ScraperConfig scraper;
  SchedulerConfig scheduler;
  int max_attempts = kDefaultMaxAttempts;  // endpoints tried for one request on connect failures
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(2)};
  // Longest silence from an endpoint mid-request (a long prefill streams nothing).
  std::chrono::milliseconds io_timeout{std::chrono::seconds(600)};
  // KV events (precise-prefix-cache-scorer): an endpoint's `kv-events=tcp://HOST:PORT` label, else
  // tcp://<its host>:kv_events_port when this is set (llm-d's podDiscoveryConfig.socketPort).
  uint16_t kv_events_port = 0;
  KvEventSubscriberConfig kv_events;
};

// One request's scheduling, shared by the HTTP proxy and the Envoy ext_proc front end.
struct Routed {
  int status = 200;  // 200: scheduled; else the HTTP error to answer with (400, 429, 503)
  std::string error, error_type;
  SchedRequest request;
  Scheduler::Decision decision;
  // The endpoint list the decision points into, kept alive while the request is served (the set
  // may drop an endpoint meanwhile).
  std::shared_ptr<const EndpointList> endpoints;
};

class Router {
 public:
  // Binds the port at once; throws llmd::Error for a bad configuration or a busy port.
  Router(RouterConfig config, const EndpointPickerConfig& epp, PromptKeyer keyer);
  ~Router();  // stop()

  void start();
  void stop();
  // Stops accepting and lets the requests being proxied finish for up to `grace`, then stop().
  void drain(std::chrono::milliseconds grace);
  uint16_t port() const;

  // Parses an OpenAI body, keys its prompt and schedules it; kOther (models, tokenize: no prompt)
  // schedules an empty request. Counts the outcome in the router's metrics. Thread-safe.
  enum class Api { kCompletions, kChat, kOther };
  Routed route(std::string_view body, Api api, const http::Headers& headers);

  EndpointSet& endpoints() { return endpoints_; }
  KvIndex& kv_index() { return kv_index_; }
  KvEventSubscriber& kv_events() { return *subscriber_; }
  Scheduler& scheduler() { return *scheduler_; }
  metrics::Registry& registry() { return registry_; }

  struct Impl;

 private:
  std::pair<std::size_t, std::size_t> count_fit() const;  // endpoints known, fit now

  RouterConfig cfg_;
  PromptKeyer keyer_;
  metrics::Registry registry_;
  RouterMetrics metrics_;
  KvIndex kv_index_;
  std::unique_ptr<KvEventSubscriber> subscriber_;
  EndpointSet endpoints_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<Scraper> scraper_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmd::router
