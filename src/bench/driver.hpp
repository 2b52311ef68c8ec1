#pragma once
// The load generator of `llmd bench`: sends a workload's requests to an OpenAI-compatible server as
// streaming requests on an open-loop schedule (Poisson / gamma arrivals, trace times, or all at
// once), bounded by a concurrency limit, and records per request when it was sent, when each text
// chunk arrived and how it ended.
//
// Threading: run() drives everything from one io_context on the calling thread (one core); the
// workload is only called from that thread. Timestamps are taken at the entry of the client's body
// callback, so the driver's own delay is what lies between the socket read and that call.
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "bench/report.hpp"
#include "bench/workload.hpp"

namespace llmd::bench {

// http://HOST[:PORT][/PREFIX]; the API paths go below PREFIX ("/v1" is added unless PREFIX ends in it).
struct BaseUrl {
  std::string host;
  uint16_t port = 80;
  std::string prefix;  // "" or "/something", no trailing '/'
};
BaseUrl parse_base_url(std::string_view url);  // throws llmd::Error (https is not supported)

enum class Endpoint { kCompletions, kChat };
Endpoint parse_endpoint(std::string_view name);  // completions | chat; throws llmd::Error
std::string endpoint_path(const BaseUrl& url, Endpoint e);

struct Progress {
  uint64_t sent = 0, completed = 0, failed = 0;
  uint64_t total = 0;  // the measured requests asked for (warm-up excluded)
  bool warmup = false;
  double elapsed_s = 0;
};

struct DriverConfig {
  static constexpr double kUnlimitedRate = std::numeric_limits<double>::infinity();

  BaseUrl url;
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  std::string api_key;  // sent as "Authorization: Bearer KEY" when set
  // Sent with every request. 0 (greedy), as `vllm bench serve` sends: sampling costs the server
  // CPU that is no part of what a serving benchmark measures, and greedy output is repeatable.
  double temperature = 0;
  double request_rate = kUnlimitedRate;  // requests/s; infinity: all at once
  double burstiness = 1.0;               // gamma shape of the gaps; 1 is Poisson
  uint32_t max_concurrency = 0;          // requests in flight at most; 0: no bound
  uint64_t num_requests = 100;           // measured requests (after the warm-up)
  double duration_s = 0;                 // stop sending after this long; 0: no limit
  uint64_t warmup = 0;  // requests sent first (as fast as the concurrency allows), not measured
  uint64_t seed = 0;    // the arrival schedule
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  // The longest wait for any one read: a silent server fails the request as "timeout".
  std::chrono::milliseconds io_timeout{std::chrono::seconds(120)};
  // The longest a whole request may take, however steadily it trickles.
  std::chrono::milliseconds request_timeout{std::chrono::seconds(600)};
  // Called on the driver thread after every finished request; keep it cheap.
  std::function<void(const Progress&)> on_progress;
};

struct RunResult {
  std::vector<RequestRecord> records;  // warm-up ones included (flagged), in completion order
  double duration_s = 0;               // the measured phase: its first send to its last end
};

// Runs the whole benchmark; returns when every request sent has ended (each is bounded by the
// timeouts). Request failures are recorded, not thrown; a workload error throws.
RunResult run_benchmark(Workload& workload, const DriverConfig& cfg);

// The JSON body of one streaming request (exposed for tests).
std::string request_body(const BenchRequest& req, const DriverConfig& cfg);

}  // namespace llmd::bench
