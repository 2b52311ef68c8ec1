#pragma once
// The router's own /metrics: its decisions, how long scheduling takes, how much prefix cache it
// expected to hit, and what went wrong (proxy errors, shed requests, bad scrapes and KV events).
#include "common/metrics.hpp"

namespace llmd::router {

struct RouterMetrics {
  explicit RouterMetrics(metrics::Registry& r);

  metrics::CounterFamily& decisions;         // {profile, endpoint}
  metrics::Histogram& scheduling;            // seconds per schedule() call
  metrics::Histogram& predicted_prefix_hit;  // the picked endpoint's cached fraction of the prompt
  metrics::CounterFamily& proxy_errors;      // {kind}: connect, upstream_closed, bad_request, no_endpoint ...
  metrics::CounterFamily& pd_requests;  // {outcome}: disaggregated, or aggregated after a failed prefill leg
  metrics::Counter& requests;
  metrics::Counter& shed;
  metrics::Counter& scrapes_failed;
  metrics::Counter& metrics_malformed;  // scraped lines that did not parse
  metrics::GaugeFamily& endpoints;      // {state}: fit, unfit
  // The KV-event subscriber's totals, read at each scrape of /metrics (gauges: set, not counted here).
  metrics::Gauge& kv_events;
  metrics::Gauge& kv_events_malformed;  // messages that did not decode and unknown events, skipped
  metrics::Gauge& kv_events_gaps;
  metrics::Gauge& kv_index_blocks;  // (block, endpoint) entries of the precise index
};

}  // namespace llmd::router
