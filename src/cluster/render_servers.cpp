// The model server pools: `llmd serve` Deployments and the headless Services that the router's
// --endpoints-dns resolves to one address per ready pod.
#include <optional>

#include "cluster/k8s_layout.hpp"
#include "cluster/k8s_names.hpp"
#include "cluster/render_parts.hpp"
#include "cluster/serve_command.hpp"

namespace llmd::cluster::k8s {
namespace {

// Kubernetes starts a large model's pod long before it serves; allow 10 minutes of loading.
constexpr int32_t kStartupPeriodSeconds = 5;
constexpr int32_t kStartupFailures = 120;

// On Kubernetes the pods are apart: shared memory cannot reach another pod (each has its own
// network namespace, so the Unix socket that passes the memfd is out of reach), so "shm" becomes
// "auto", which tries it and falls back to tcp.
std::string_view kubernetes_transport(TransportType t) {
  return t == TransportType::kShm ? transport_name(TransportType::kAuto) : transport_name(t);
}

std::vector<std::string> serve_args(const InferenceCluster& c, const Pool& p) {
  ServeSite site;
  if (!c.model.path.empty()) site.model_path = model_path_in_pod(c);
  site.host = "0.0.0.0";
  site.port = kServerPort;
  site.transport = std::string(kubernetes_transport(c.transport.type));
  site.kv_transfer_host = "0.0.0.0";
  site.kv_transfer_port = kKvTransferPort;
  site.advertise_host = "$(" + std::string(kPodIpEnv) + ")";
  if (c.router.uses_kv_events) site.kv_events_endpoint = "tcp://0.0.0.0:" + std::to_string(kKvEventsPort);
  return serve_command(c, p, site);
}

Value server_container(const InferenceCluster& c, const Pool& p) {
  Value ct = Value::map({{"name", "llmd"},
                         {"image", c.image},
                         {"imagePullPolicy", "IfNotPresent"},
                         {"command", Value::list({kContainerCommand})},
                         {"args", strings(serve_args(c, p))}});
  if (c.disaggregated()) {
    // The address decode servers pull from, and the secret that authenticates the pulls.
    ct.set(
        "env",
        Value::list(
            {Value::map(
                 {{"name", kPodIpEnv},
                  {"valueFrom", Value::map({{"fieldRef", Value::map({{"fieldPath", "status.podIP"}})}})}}),
             Value::map({{"name", kKvTransferSecretEnv},
                         {"valueFrom", Value::map({{"secretKeyRef",
                                                    Value::map({{"name", c.transport.secret_ref},
                                                                {"key", TransportSpec::kSecretKey}})}})}})}));
  }
  Value& ports = ct.set("ports", Value::list({container_port(kServerPortName, kServerPort)}));
  if (c.disaggregated()) ports.push(container_port(kKvTransferPortName, kKvTransferPort));
  if (c.router.uses_kv_events) ports.push(container_port(kKvEventsPortName, kKvEventsPort));
  ct.set("startupProbe", http_get_probe("/health", kServerPortName, kStartupPeriodSeconds, kStartupFailures));
  ct.set("readinessProbe", http_get_probe("/health", kServerPortName, 5, 2));
  ct.set("livenessProbe", http_get_probe("/health", kServerPortName, 10, 3));
  add_resources(ct, p.placement.resources);
  if (c.model.volume) ct.set("volumeMounts", Value::list({model_volume_mount()}));
  return ct;
}

Manifest deployment(const InferenceCluster& c, const Pool& p) {
  const std::string name = pool_name(c, p.role);
  Value pod_labels = pool_labels(c, p.role);
  pod_labels.set(std::string(kInferenceServingLabel), "true");
  Value pod = Value::map({{"automountServiceAccountToken", false},
                          {"terminationGracePeriodSeconds", p.termination_grace_seconds}});
  add_placement(pod, p.placement);
  pod.set("containers", Value::list({server_container(c, p)}));
  if (c.model.volume) pod.set("volumes", Value::list({model_volume(c)}));
  Value d = object("apps/v1", "Deployment", name, pool_labels(c, p.role));
  d.set("spec", Value::map({{"replicas", p.replicas},
                            {"selector", Value::map({{"matchLabels", pool_labels(c, p.role)}})},
                            {"template", Value::map({{"metadata", Value::map({{"labels", pod_labels}})},
                                                     {"spec", std::move(pod)}})}}));
  return {std::string(pool_key(p.role)) + "-deployment.yaml", std::move(d)};
}

Manifest headless_service(const InferenceCluster& c, const Pool& p) {
  Value s = object("v1", "Service", pool_name(c, p.role), pool_labels(c, p.role));
  s.set("spec", Value::map({{"clusterIP", "None"},
                            {"selector", pool_labels(c, p.role)},
                            {"ports", Value::list({service_port(kServerPortName, kServerPort)})}}));
  return {std::string(pool_key(p.role)) + "-service.yaml", std::move(s)};
}

}  // namespace

std::vector<Manifest> render_servers(const InferenceCluster& c) {
  std::vector<Manifest> out;
  for (const Pool& p : c.pools) {
    out.push_back(deployment(c, p));
    out.push_back(headless_service(c, p));
  }
  return out;
}

}  // namespace llmd::cluster::k8s
