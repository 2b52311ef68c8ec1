#include "cluster/router_config.hpp"

#include "router/config.hpp"
#include "router/kv_index.hpp"
#include "router/plugin_registry.hpp"
#include "router/scheduler.hpp"

namespace llmd::cluster {

std::string_view default_aggregated_router_config() {
  return R"(apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
- type: max-score-picker
- type: single-profile-handler
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
  - pluginRef: max-score-picker
)";
}

std::string_view default_disaggregated_router_config() {
  return R"(apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefill-filter
- type: decode-filter
- type: queue-scorer
- type: prefix-cache-scorer
- type: max-score-picker
- type: prefix-based-pd-decider
  parameters:
    nonCachedTokens: 256
- type: disagg-profile-handler
  parameters:
    deciders:
      prefill: prefix-based-pd-decider
schedulingProfiles:
- name: prefill
  plugins:
  - pluginRef: prefill-filter
  - pluginRef: queue-scorer
    weight: 1
  - pluginRef: max-score-picker
- name: decode
  plugins:
  - pluginRef: decode-filter
  - pluginRef: queue-scorer
    weight: 1
  - pluginRef: prefix-cache-scorer
    weight: 2
  - pluginRef: max-score-picker
)";
}

bool check_router_config(const std::string& yaml) {
  const router::EndpointPickerConfig config = router::parse_endpoint_picker_config(yaml);
  // precise-prefix-cache-scorer needs an index to be built; the one here is empty and dropped.
  router::KvIndex index;
  const router::PluginEnv env{&index};
  const router::Scheduler scheduler(config, env);
  for (const router::PluginSpec& p : config.plugins)
    if (p.type == "precise-prefix-cache-scorer") return true;
  return false;
}

}  // namespace llmd::cluster
