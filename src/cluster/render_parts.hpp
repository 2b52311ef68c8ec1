#pragma once
// The parts of render_kubernetes (render_k8s.cpp), one file each.
#include <vector>

#include "cluster/k8s_objects.hpp"
#include "cluster/spec.hpp"

namespace llmd::cluster::k8s {

// Per pool: the Deployment of `llmd serve` and the headless Service the router resolves.
std::vector<Manifest> render_servers(const InferenceCluster& c);
// The router as the endpoint picker: ConfigMap, ServiceAccount, Deployment, Service, InferencePool.
std::vector<Manifest> render_router(const InferenceCluster& c);
// The kvstore StatefulSet and its headless Service; nothing when spec.cache.kvstore.replicas is 0.
std::vector<Manifest> render_kvstore(const InferenceCluster& c);

}  // namespace llmd::cluster::k8s
