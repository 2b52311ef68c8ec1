#include "cluster/render_k8s.hpp"

#include "cluster/render_parts.hpp"

namespace llmd::cluster {

std::vector<RenderedFile> render_kubernetes(const InferenceCluster& c) {
  std::vector<k8s::Manifest> all;
  for (auto* part : {&k8s::render_servers, &k8s::render_router, &k8s::render_kvstore})
    for (k8s::Manifest& m : part(c)) all.push_back(std::move(m));

  std::vector<RenderedFile> out;
  yaml::Value kustomization =
      yaml::Value::map({{"apiVersion", "kustomize.config.k8s.io/v1beta1"}, {"kind", "Kustomization"}});
  if (!c.namespace_name.empty()) kustomization.set("namespace", c.namespace_name);
  yaml::Value& resources = kustomization.set("resources", yaml::Value::list());
  for (const k8s::Manifest& m : all) {
    resources.push(m.file);
    out.push_back({m.file, yaml::emit(m.object)});
  }
  out.push_back({"kustomization.yaml", yaml::emit(kustomization)});
  return out;
}

}  // namespace llmd::cluster
