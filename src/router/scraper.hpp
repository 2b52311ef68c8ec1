#pragma once
// Reads every endpoint's /metrics (vLLM's names) on a fixed interval — llm-d's default is 50 ms —
// into the endpoint's live state. A refused connection marks the endpoint unreachable (ejected);
// scraping goes on, so the first success brings it back. Malformed lines are counted and skipped.
//
// Threading: one coroutine per endpoint on the given executor; start()/stop() for an endpoint from
// any thread (the EndpointSet observer calls them).
#include <chrono>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>

#include "common/asio.hpp"
#include "common/http_client.hpp"
#include "router/endpoint.hpp"
#include "router/router_metrics.hpp"

namespace llmd::router {

struct ScraperConfig {
  static constexpr std::chrono::milliseconds kDefaultInterval{50};
  std::chrono::milliseconds interval = kDefaultInterval;
  std::chrono::milliseconds timeout{1000};  // connect and read of one scrape
  std::string path = "/metrics";
};

// Applies one scrape's text to `e`; returns the number of malformed lines.
std::size_t apply_metrics(std::string_view text, Endpoint& e, SteadyNs now);

class Scraper {
 public:
  Scraper(asio::any_io_executor ex, ScraperConfig config, RouterMetrics* metrics);
  ~Scraper();  // stops every loop (they end at their next wake-up)

  void start(const std::shared_ptr<Endpoint>& e);
  void stop(const Endpoint& e);

 private:
  struct Loop;
  asio::awaitable<void> run(std::shared_ptr<Endpoint> e, std::shared_ptr<Loop> loop);

  asio::any_io_executor ex_;
  ScraperConfig config_;
  RouterMetrics* metrics_;
  http::Client client_;
  std::mutex mu_;
  std::unordered_map<EndpointId, std::shared_ptr<Loop>> loops_;
};

}  // namespace llmd::router
