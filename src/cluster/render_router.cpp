// The router as the Gateway API Inference Extension's endpoint picker (EPP): `llmd route` with its
// Envoy ext_proc port, finding the model servers through the pools' headless Services (DNS), and
// the InferencePool that points the gateway at it.
#include <string>

#include "cluster/k8s_layout.hpp"
#include "cluster/render_parts.hpp"

namespace llmd::cluster::k8s {
namespace {

constexpr std::string_view kConfigVolumeName = "config";
constexpr int32_t kRouterGraceSeconds = 30;

// "<name>-prefill:8000;role=prefill,<name>-decode:8000;role=decode": the router labels each
// address it resolves with the pool's role, as llm-d's EPP reads llm-d.ai/role from the pods.
std::string endpoints_dns(const InferenceCluster& c) {
  std::string out;
  for (const Pool& p : c.pools) {
    if (!out.empty()) out += ',';
    out +=
        pool_name(c, p.role) + ":" + std::to_string(kServerPort) + ";role=" + std::string(role_name(p.role));
  }
  return out;
}

// The tokenizer gives the router exact token counts and block keys. A simulated server keys its
// blocks from a different root than the file's, so with --sim the router estimates instead.
bool router_has_tokenizer(const InferenceCluster& c) {
  return !c.model.sim && c.model.volume.has_value();
}

std::vector<std::string> route_args(const InferenceCluster& c) {
  std::vector<std::string> a = {"route",
                                "--host",
                                "0.0.0.0",
                                "--port",
                                std::to_string(kRouterHttpPort),
                                "--extproc-port",
                                std::to_string(kExtProcPort),
                                "--config",
                                std::string(kRouterConfigMountPath) + "/" + std::string(kRouterConfigKey),
                                "--endpoints-dns",
                                endpoints_dns(c)};
  if (router_has_tokenizer(c)) a.insert(a.end(), {"--tokenizer", model_path_in_pod(c)});
  if (c.router.uses_kv_events) a.insert(a.end(), {"--kv-events-port", std::to_string(kKvEventsPort)});
  a.insert(a.end(), c.router.args.begin(), c.router.args.end());
  return a;
}

Manifest config_map(const InferenceCluster& c) {
  Value m = object("v1", "ConfigMap", router_name(c), component_labels(c, kRouterComponent));
  m.set("data", Value::map({{std::string(kRouterConfigKey), c.router.config_yaml}}));
  return {"epp-configmap.yaml", std::move(m)};
}

// The router reads no Kubernetes API (DNS finds the servers), so its account has no Role and no
// token mounted: a compromised router holds no credentials.
Manifest service_account(const InferenceCluster& c) {
  Value sa = object("v1", "ServiceAccount", router_name(c), component_labels(c, kRouterComponent));
  sa.set("automountServiceAccountToken", false);
  return {"epp-serviceaccount.yaml", std::move(sa)};
}

Manifest deployment(const InferenceCluster& c) {
  Value ct = Value::map({{"name", "epp"},
                         {"image", c.image},
                         {"imagePullPolicy", "IfNotPresent"},
                         {"command", Value::list({kContainerCommand})},
                         {"args", strings(route_args(c))},
                         {"ports", Value::list({container_port(kExtProcPortName, kExtProcPort),
                                                container_port(kRouterHttpPortName, kRouterHttpPort)})}});
  // Ready when the gateway's ext_proc calls would be answered: gRPC health on the ext_proc port.
  ct.set("readinessProbe", Value::map({{"grpc", Value::map({{"port", kExtProcPort}})},
                                       {"periodSeconds", 5},
                                       {"timeoutSeconds", 5},
                                       {"failureThreshold", 2}}));
  ct.set("livenessProbe", http_get_probe("/health", kRouterHttpPortName, 10, 3));
  add_resources(ct, c.router.placement.resources);
  Value mounts = Value::list(
      {Value::map({{"name", kConfigVolumeName}, {"mountPath", kRouterConfigMountPath}, {"readOnly", true}})});
  if (router_has_tokenizer(c)) mounts.push(model_volume_mount());
  ct.set("volumeMounts", std::move(mounts));

  Value pod = Value::map({{"serviceAccountName", router_name(c)},
                          {"automountServiceAccountToken", false},
                          {"terminationGracePeriodSeconds", kRouterGraceSeconds}});
  add_placement(pod, c.router.placement);
  pod.set("containers", Value::list({std::move(ct)}));
  Value volumes = Value::list(
      {Value::map({{"name", kConfigVolumeName}, {"configMap", Value::map({{"name", router_name(c)}})}})});
  if (router_has_tokenizer(c)) volumes.push(model_volume(c));
  pod.set("volumes", std::move(volumes));

  Value d = object("apps/v1", "Deployment", router_name(c), component_labels(c, kRouterComponent));
  d.set(
      "spec",
      Value::map({{"replicas", c.router.replicas},
                  {"selector", Value::map({{"matchLabels", component_labels(c, kRouterComponent)}})},
                  {"template",
                   Value::map({{"metadata", Value::map({{"labels", component_labels(c, kRouterComponent)}})},
                               {"spec", std::move(pod)}})}}));
  return {"epp-deployment.yaml", std::move(d)};
}

Manifest service(const InferenceCluster& c) {
  Value grpc = service_port(kExtProcPortName, kExtProcPort);
  grpc.set("appProtocol", "kubernetes.io/h2c");  // gRPC without TLS: the gateway must speak HTTP/2
  Value s = object("v1", "Service", router_name(c), component_labels(c, kRouterComponent));
  s.set("spec",
        Value::map(
            {{"type", "ClusterIP"},
             {"selector", component_labels(c, kRouterComponent)},
             {"ports", Value::list({std::move(grpc), service_port(kRouterHttpPortName, kRouterHttpPort)})}}));
  return {"epp-service.yaml", std::move(s)};
}

Manifest inference_pool(const InferenceCluster& c) {
  Value p = object("inference.networking.k8s.io/v1", "InferencePool", inference_pool_name(c),
                   component_labels(c, kModelServerComponent));
  p.set("spec",
        Value::map({{"selector", Value::map({{"matchLabels", component_labels(c, kModelServerComponent)}})},
                    {"targetPorts", Value::list({Value::map({{"number", kServerPort}})})},
                    {"endpointPickerRef", Value::map({{"kind", "Service"},
                                                      {"name", router_name(c)},
                                                      {"port", Value::map({{"number", kExtProcPort}})},
                                                      {"failureMode", "FailClose"}})}}));
  return {"inferencepool.yaml", std::move(p)};
}

}  // namespace

std::vector<Manifest> render_router(const InferenceCluster& c) {
  std::vector<Manifest> out;
  out.push_back(config_map(c));
  out.push_back(service_account(c));
  out.push_back(deployment(c));
  out.push_back(service(c));
  out.push_back(inference_pool(c));
  return out;
}

}  // namespace llmd::cluster::k8s
