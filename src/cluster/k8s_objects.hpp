#pragma once
// Builders of the Kubernetes object parts every rendered workload shares: metadata, labels,
// resources, placement, probes, the model volume. Each returns a yaml::Value in the field order
// kubectl prints, so diffs against a live object read naturally.
#include <string>
#include <string_view>
#include <vector>

#include "cluster/spec.hpp"
#include "cluster/yaml_value.hpp"

namespace llmd::cluster::k8s {

using yaml::Value;

// One object and the file it is written to.
struct Manifest {
  std::string file;
  Value object;
};

// {llmd.dev/cluster: <name>, llmd.dev/component: <component>}: what selects a workload's pods.
Value component_labels(const InferenceCluster& c, std::string_view component);
// Component labels of the model servers plus llm-d.ai/role: what selects one pool's pods.
Value pool_labels(const InferenceCluster& c, Role role);

// apiVersion, kind and metadata (name, labels) of an object.
Value object(std::string_view api_version, std::string_view kind, const std::string& name,
             const Value& labels);

Value strings(const std::vector<std::string>& items);
Value container_port(std::string_view name, int32_t number);
Value service_port(std::string_view name, int32_t number);
Value http_get_probe(std::string_view path, std::string_view port_name, int32_t period_s, int32_t failures);

// Pod spec fields from a placement: nodeSelector, tolerations.
void add_placement(Value& pod_spec, const Placement& p);
// A container's resources: requests cpu/memory/gpu, limits memory/gpu. Nothing when empty.
void add_resources(Value& container, const Resources& r);

// The volume holding the model file (a PVC or a hostPath folder) and its read-only mount.
Value model_volume(const InferenceCluster& c);
Value model_volume_mount();

}  // namespace llmd::cluster::k8s
