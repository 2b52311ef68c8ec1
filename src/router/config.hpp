#pragma once
// llm-d's EndpointPickerConfig (apiVersion llm-d.ai/v1alpha1, or GIE's older
// inference.networking.x-k8s.io/v1alpha1): plugins (type, name, parameters) and scheduling
// profiles (pluginRef, weight), plus saturationDetector. Unknown fields are errors that name the
// field, as llm-d's strict decoding makes them.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace llmd::router {

struct PluginSpec {
  std::string type, name;  // name defaults to type
  nlohmann::json parameters;
};

struct ProfilePluginRef {
  std::string plugin;
  std::optional<double> weight;  // scorers: default 1
};

struct ProfileSpec {
  std::string name;
  std::vector<ProfilePluginRef> plugins;
};

struct EndpointPickerConfig {
  std::vector<PluginSpec> plugins;
  std::vector<ProfileSpec> profiles;
  std::optional<std::string> saturation_detector;  // saturationDetector.pluginRef
};

// Throws llmd::Error naming the field ("schedulingProfiles[0].plugins[1].pluginRef: ...").
EndpointPickerConfig parse_endpoint_picker_config(std::string_view yaml);
// llm-d's default when no config is given: queue-scorer 2, kv-cache-utilization-scorer 2,
// prefix-cache-scorer 3, max-score-picker, single-profile-handler.
EndpointPickerConfig default_endpoint_picker_config();

}  // namespace llmd::router
