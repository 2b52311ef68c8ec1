// The shared remote KV tier. `llmd kvstore` arrives with the tiered-cache issue; until then the
// spec can already name it and the manifests place it, so a cluster's layout does not change when
// the command lands.
#include <string>

#include "cluster/k8s_layout.hpp"
#include "cluster/render_parts.hpp"

namespace llmd::cluster::k8s {

std::vector<Manifest> render_kvstore(const InferenceCluster& c) {
  const KvStoreSpec& ks = c.cache.kvstore;
  if (ks.replicas == 0) return {};
  const Value labels = component_labels(c, kKvStoreComponent);
  Value ct =
      Value::map({{"name", "kvstore"},
                  {"image", c.image},
                  {"imagePullPolicy", "IfNotPresent"},
                  {"command", Value::list({kContainerCommand})},
                  {"args", Value::list({"kvstore", "--port", std::to_string(kKvStorePort)})},
                  {"ports", Value::list({container_port(kKvStorePortName, kKvStorePort)})},
                  {"readinessProbe", Value::map({{"tcpSocket", Value::map({{"port", kKvStorePortName}})},
                                                 {"periodSeconds", 5},
                                                 {"failureThreshold", 2}})}});
  add_resources(ct, ks.placement.resources);
  Value pod = Value::map({{"automountServiceAccountToken", false}});
  add_placement(pod, ks.placement);
  pod.set("containers", Value::list({std::move(ct)}));

  Value sts = object("apps/v1", "StatefulSet", kvstore_name(c), labels);
  sts.set("spec", Value::map({{"serviceName", kvstore_name(c)},
                              {"replicas", ks.replicas},
                              {"selector", Value::map({{"matchLabels", labels}})},
                              {"template", Value::map({{"metadata", Value::map({{"labels", labels}})},
                                                       {"spec", std::move(pod)}})}}));
  Value svc = object("v1", "Service", kvstore_name(c), labels);
  svc.set("spec", Value::map({{"clusterIP", "None"},
                              {"selector", labels},
                              {"ports", Value::list({service_port(kKvStorePortName, kKvStorePort)})}}));
  return {{"kvstore-statefulset.yaml", std::move(sts)}, {"kvstore-service.yaml", std::move(svc)}};
}

}  // namespace llmd::cluster::k8s
