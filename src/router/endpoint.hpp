#pragma once
// A model server the router can send requests to: its address and labels (llm-d.ai/role and any
// others for label-selector-filter), and its live state — the metrics last scraped from it, its
// health, and the requests the router has in flight to it.
//
// Threading: the identity fields are immutable; the live state is atomics written by the scraper
// and the proxy and read by schedulers on any thread.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "router/kv_index.hpp"

namespace llmd::router {

inline constexpr std::string_view kRoleLabel = "llm-d.ai/role";
// The endpoint's KV events address (tcp://HOST:PORT), for precise-prefix-cache-scorer.
inline constexpr std::string_view kKvEventsLabel = "kv-events";

using Labels = std::map<std::string, std::string, std::less<>>;

// What discovery knows of an endpoint: "host:port;role=prefill;zone=a".
struct EndpointSpec {
  std::string host;
  uint16_t port = 0;
  Labels labels;

  std::string address() const;  // host:port ([v6]:port)
  friend bool operator==(const EndpointSpec&, const EndpointSpec&) = default;
};
// One spec; `role=X` is short for the llm-d.ai/role label. Throws llmd::Error naming the bad part.
EndpointSpec parse_endpoint_spec(std::string_view text);
// Comma- or newline-separated specs; '#' starts a comment (endpoint files).
std::vector<EndpointSpec> parse_endpoint_list(std::string_view text);

using SteadyNs = int64_t;  // steady_clock nanoseconds since its epoch
inline SteadyNs steady_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Endpoint {
 public:
  Endpoint(EndpointId id, EndpointSpec spec);

  EndpointId id() const { return id_; }
  const EndpointSpec& spec() const { return spec_; }
  const std::string& address() const { return address_; }
  // What the router sends back in x-session-token (base64 of the address, as llm-d's
  // session-affinity-scorer does): made once, not per response.
  const std::string& session_token() const { return session_token_; }
  const std::string& host() const { return spec_.host; }
  uint16_t port() const { return spec_.port; }
  std::string_view label(std::string_view key) const;  // "" when absent
  std::string_view role() const { return label(kRoleLabel); }

  // Scraped (vLLM names): vllm:num_requests_waiting / _running, vllm:kv_cache_usage_perc (0..1),
  // vllm:cache_config_info{block_size, num_gpu_blocks}.
  std::atomic<double> waiting{0}, running{0}, kv_usage{0};
  std::atomic<int32_t> block_size{0};
  std::atomic<int64_t> num_gpu_blocks{0};
  std::atomic<SteadyNs> scraped_at{0};  // 0: never scraped
  // False while it refuses connections (ejected); the scraper probes it back.
  std::atomic<bool> reachable{true};
  // Requests the router is proxying to it now.
  std::atomic<int32_t> active{0};

  // Fit to receive requests: reachable, and metrics no older than `staleness`.
  bool fit(SteadyNs now, std::chrono::nanoseconds staleness) const {
    const SteadyNs at = scraped_at.load(std::memory_order_relaxed);
    return reachable.load(std::memory_order_relaxed) && at != 0 && now - at <= staleness.count();
  }

 private:
  EndpointId id_;
  EndpointSpec spec_;
  std::string address_;
  std::string session_token_;
};

}  // namespace llmd::router
