#pragma once
// `llmd render --target kubernetes`: an InferenceCluster as Kubernetes manifests, one object per
// file plus a kustomization.yaml listing them, byte-for-byte the same for the same spec.
//
// What is rendered (names start with metadata.name, written <name> here):
//   per pool     Deployment <name>-<pool> running `llmd serve`, headless Service <name>-<pool>
//                (pool: prefill and decode, or aggregated)
//   router       ConfigMap, ServiceAccount, Deployment and Service <name>-epp running `llmd route`
//                as the Gateway API Inference Extension's endpoint picker; InferencePool <name>
//   kvstore      StatefulSet and headless Service <name>-kvstore, when spec.cache.kvstore.replicas > 0
#include <string>
#include <vector>

#include "cluster/spec.hpp"

namespace llmd::cluster {

struct RenderedFile {
  std::string name;  // a file name without folders, e.g. "decode-deployment.yaml"
  std::string text;  // one YAML document
};

// Throws llmd::Error naming the field for what parses but cannot run on Kubernetes (ucx transfer).
std::vector<RenderedFile> render_kubernetes(const InferenceCluster& cluster);

}  // namespace llmd::cluster
