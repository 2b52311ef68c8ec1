#include "router/router_metrics.hpp"

namespace llmd::router {
namespace {
// Scheduling is budgeted in microseconds; the top buckets catch lock waits under load.
constexpr double kSchedulingBuckets[] = {5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2};
constexpr double kRatioBuckets[] = {0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0};
}  // namespace

RouterMetrics::RouterMetrics(metrics::Registry& r)
    : decisions(r.counter("llmd_router_decisions_total", "Requests scheduled, by profile and endpoint",
                          {"profile", "endpoint"})),
      scheduling(r.histogram("llmd_router_scheduling_duration_seconds",
                             "Time to pick endpoints for a request", kSchedulingBuckets)
                     .with({})),
      predicted_prefix_hit(
          r.histogram("llmd_router_prefix_hit_ratio_predicted",
                      "Fraction of the prompt's blocks the picked endpoint was expected to hold",
                      kRatioBuckets)
              .with({})),
      proxy_errors(r.counter("llmd_router_proxy_errors_total", "Requests that failed in the proxy, by kind",
                             {"kind"})),
      pd_requests(
          r.counter("llmd_router_pd_requests_total",
                    "Requests the scheduler disaggregated, by how they were served: "
                    "disaggregated, or aggregated on the decode endpoint after the prefill leg failed",
                    {"outcome"})),
      requests(r.counter("llmd_router_requests_total", "Requests received by the proxy").with({})),
      shed(r.counter("llmd_router_requests_shed_total",
                     "Requests refused with 429 while every endpoint was saturated")
               .with({})),
      scrapes_failed(
          r.counter("llmd_router_scrapes_failed_total", "Endpoint /metrics scrapes that failed").with({})),
      metrics_malformed(
          r.counter("llmd_router_metrics_malformed_total", "Scraped metric lines that did not parse")
              .with({})),
      endpoints(r.gauge("llmd_router_endpoints", "Endpoints known to the router, by state", {"state"})),
      kv_events(r.gauge("llmd_router_kv_events", "KV events applied to the index since start").with({})),
      kv_events_malformed(
          r.gauge("llmd_router_kv_events_skipped", "KV event messages that did not decode and unknown events")
              .with({})),
      kv_events_gaps(
          r.gauge("llmd_router_kv_event_sequence_gaps", "Jumps in the servers' KV event sequence numbers")
              .with({})),
      kv_index_blocks(
          r.gauge("llmd_router_kv_index_entries", "(block, endpoint) pairs in the KV event index").with({})) {
}

}  // namespace llmd::router
