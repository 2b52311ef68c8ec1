#include "cluster/k8s_objects.hpp"

#include "cluster/k8s_layout.hpp"

namespace llmd::cluster::k8s {
namespace {

constexpr std::string_view kModelVolumeName = "model";

}  // namespace

Value component_labels(const InferenceCluster& c, std::string_view component) {
  return Value::map({{std::string(kClusterLabel), c.name}, {std::string(kComponentLabel), component}});
}

Value pool_labels(const InferenceCluster& c, Role role) {
  Value v = component_labels(c, kModelServerComponent);
  v.set(std::string(kRoleLabel), role_name(role));
  return v;
}

Value object(std::string_view api_version, std::string_view kind, const std::string& name,
             const Value& labels) {
  return Value::map({{"apiVersion", api_version},
                     {"kind", kind},
                     {"metadata", Value::map({{"name", name}, {"labels", labels}})}});
}

Value strings(const std::vector<std::string>& items) {
  Value v = Value::list();
  for (const std::string& s : items) v.push(s);
  return v;
}

Value container_port(std::string_view name, int32_t number) {
  return Value::map({{"name", name}, {"containerPort", number}, {"protocol", "TCP"}});
}

Value service_port(std::string_view name, int32_t number) {
  return Value::map({{"name", name}, {"port", number}, {"targetPort", name}, {"protocol", "TCP"}});
}

Value http_get_probe(std::string_view path, std::string_view port_name, int32_t period_s, int32_t failures) {
  return Value::map({{"httpGet", Value::map({{"path", path}, {"port", port_name}})},
                     {"periodSeconds", period_s},
                     {"timeoutSeconds", 5},
                     {"failureThreshold", failures}});
}

void add_placement(Value& pod_spec, const Placement& p) {
  if (!p.node_selector.empty()) {
    Value& sel = pod_spec.set("nodeSelector", Value::map());
    for (const auto& [k, v] : p.node_selector) sel.set(k, v);
  }
  if (p.tolerations.empty()) return;
  Value& list = pod_spec.set("tolerations", Value::list());
  for (const Toleration& t : p.tolerations) {
    Value v = Value::map();
    if (!t.key.empty()) v.set("key", t.key);
    if (!t.op.empty()) v.set("operator", t.op);
    if (!t.value.empty()) v.set("value", t.value);
    if (!t.effect.empty()) v.set("effect", t.effect);
    if (t.toleration_seconds) v.set("tolerationSeconds", *t.toleration_seconds);
    list.push(std::move(v));
  }
}

void add_resources(Value& container, const Resources& r) {
  if (r.empty()) return;
  // No CPU limit: a CFS quota throttles the compute threads mid-step, which shows up as latency
  // spikes; the request alone places the pod. Memory and devices are limited as requested.
  Value requests = Value::map(), limits = Value::map();
  if (!r.cpu.empty()) requests.set("cpu", r.cpu);
  if (!r.memory.empty()) {
    requests.set("memory", r.memory);
    limits.set("memory", r.memory);
  }
  if (r.gpu > 0) {
    requests.set(std::string(kGpuResource), r.gpu);
    limits.set(std::string(kGpuResource), r.gpu);
  }
  Value& res = container.set("resources", Value::map());
  res.set("requests", std::move(requests));
  if (!limits.empty()) res.set("limits", std::move(limits));
}

Value model_volume(const InferenceCluster& c) {
  const ModelVolume& v = *c.model.volume;
  if (!v.host_path.empty())
    return Value::map({{"name", kModelVolumeName},
                       {"hostPath", Value::map({{"path", v.host_path}, {"type", "Directory"}})}});
  return Value::map(
      {{"name", kModelVolumeName},
       {"persistentVolumeClaim", Value::map({{"claimName", v.claim_name}, {"readOnly", true}})}});
}

Value model_volume_mount() {
  return Value::map({{"name", kModelVolumeName}, {"mountPath", kModelMountPath}, {"readOnly", true}});
}

}  // namespace llmd::cluster::k8s
