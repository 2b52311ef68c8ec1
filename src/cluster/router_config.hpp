#pragma once
// The router's EndpointPickerConfig as the cluster spec carries it: llmd's default for each pool
// style, and the check that a config would start `llmd route`.
#include <string>
#include <string_view>

namespace llmd::cluster {

// Aggregated pools: llm-d's default profile (queue 2, KV-cache utilization 2, prefix cache 3,
// max-score picker), written out so the ConfigMap shows what runs.
std::string_view default_aggregated_router_config();
// Prefill/decode pools: a prefill profile and a decode profile, the prefill leg run only when a
// prompt has enough uncached tokens (prefix-based-pd-decider), as in llm-d's P/D guides.
std::string_view default_disaggregated_router_config();

// Parses `yaml` as `llmd route --config` does and builds its plugins; throws llmd::Error with the
// router's message. Returns whether it uses precise-prefix-cache-scorer (which needs KV events).
bool check_router_config(const std::string& yaml);

}  // namespace llmd::cluster
