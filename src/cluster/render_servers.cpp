// The model server pools: `llmd serve` Deployments and the headless Services that the router's
// --endpoints-dns resolves to one address per ready pod.
#include <cmath>
#include <optional>

#include "cluster/k8s_layout.hpp"
#include "cluster/k8s_names.hpp"
#include "cluster/render_parts.hpp"

namespace llmd::cluster::k8s {
namespace {

// Kubernetes starts a large model's pod long before it serves; allow 10 minutes of loading.
constexpr int32_t kStartupPeriodSeconds = 5;
constexpr int32_t kStartupFailures = 120;

bool has_flag(const std::vector<std::string>& args, std::initializer_list<std::string_view> names) {
  for (const std::string& a : args)
    for (const std::string_view n : names)
      if (a == n || a.starts_with(std::string(n) + "=")) return true;
  return false;
}

// On Kubernetes the pods are apart: shared memory cannot reach another pod (each has its own
// network namespace, so the Unix socket that passes the memfd is out of reach), so "shm" becomes
// "auto", which tries it and falls back to tcp.
std::string_view kubernetes_transport(TransportType t) {
  return t == TransportType::kShm ? transport_name(TransportType::kAuto) : transport_name(t);
}

std::vector<std::string> serve_args(const InferenceCluster& c, const Pool& p) {
  std::vector<std::string> a = {"serve"};
  if (c.model.sim) a.push_back("--sim");
  if (!c.model.path.empty()) a.insert(a.end(), {"--model", model_path_in_pod(c)});
  a.insert(a.end(), {"--served-model-name", c.model.served_name, "--host", "0.0.0.0", "--port",
                     std::to_string(kServerPort), "--role", std::string(role_name(p.role))});
  // Compute threads default to every core of the node; a pod that asked for N cores gets N.
  if (!c.model.sim && !p.placement.resources.cpu.empty() && !has_flag(p.args, {"-t", "--threads"})) {
    const double cores = parse_quantity(p.placement.resources.cpu).value_or(0);
    if (cores >= 1) a.insert(a.end(), {"--threads", std::to_string(static_cast<int64_t>(std::floor(cores)))});
  }
  if (c.disaggregated())
    a.insert(a.end(), {"--kv-transfer", std::string(kubernetes_transport(c.transport.type)),
                       "--kv-transfer-host", "0.0.0.0", "--kv-transfer-port", std::to_string(kKvTransferPort),
                       "--kv-transfer-advertise-host", "$(" + std::string(kPodIpEnv) + ")"});
  if (c.router.uses_kv_events)
    a.insert(a.end(), {"--kv-events-endpoint", "tcp://0.0.0.0:" + std::to_string(kKvEventsPort)});
  a.insert(a.end(), p.args.begin(), p.args.end());
  return a;
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
