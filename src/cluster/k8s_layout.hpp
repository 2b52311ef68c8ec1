#pragma once
// The fixed facts of the rendered Kubernetes layout: ports, labels, mount paths and object
// names. Tests and the README rely on these, so each lives in one place.
#include <cstdint>
#include <string>
#include <string_view>

#include "cluster/spec.hpp"

namespace llmd::cluster::k8s {

// Ports inside the pods (each pod has its own address, so the defaults of the commands serve).
inline constexpr int32_t kServerPort = 8000;  // llmd serve: OpenAI API, /health, /metrics
inline constexpr int32_t kKvTransferPort =
    5600;  // llmd serve: KV transfer listener (vLLM's NIXL side channel port)
inline constexpr int32_t kKvEventsPort = 5557;    // llmd serve: ZMQ PUB of KV events (vLLM's default)
inline constexpr int32_t kExtProcPort = 9002;     // llmd route: Envoy ext_proc + gRPC health (GIE's EPP port)
inline constexpr int32_t kRouterHttpPort = 9090;  // llmd route: /health, /metrics and its OpenAI proxy
inline constexpr int32_t kKvStorePort = 7600;     // llmd kvstore

inline constexpr std::string_view kServerPortName = "http";
inline constexpr std::string_view kKvTransferPortName = "kv-transfer";
inline constexpr std::string_view kKvEventsPortName = "kv-events";
inline constexpr std::string_view kExtProcPortName = "grpc-ext-proc";
inline constexpr std::string_view kRouterHttpPortName = "http";
inline constexpr std::string_view kKvStorePortName = "kvstore";

inline constexpr std::string_view kClusterLabel = "llmd.dev/cluster";
inline constexpr std::string_view kComponentLabel = "llmd.dev/component";
inline constexpr std::string_view kRoleLabel = "llm-d.ai/role";
// llm-d's guides select model servers by this label; set so llm-d's own tools find these pods.
inline constexpr std::string_view kInferenceServingLabel = "llm-d.ai/inferenceServing";
inline constexpr std::string_view kModelServerComponent = "model-server";
inline constexpr std::string_view kRouterComponent = "epp";
inline constexpr std::string_view kKvStoreComponent = "kvstore";

inline constexpr std::string_view kModelMountPath = "/models";
inline constexpr std::string_view kRouterConfigMountPath = "/etc/llmd";
inline constexpr std::string_view kRouterConfigKey = "epp.yaml";
inline constexpr std::string_view kGpuResource = "nvidia.com/gpu";
inline constexpr std::string_view kContainerCommand = "llmd";
inline constexpr std::string_view kPodIpEnv = "POD_IP";
inline constexpr std::string_view kKvTransferSecretEnv = "LLMD_KV_TRANSFER_SECRET";  // llmd serve reads it

inline std::string pool_name(const InferenceCluster& c, Role r) {
  return c.name + "-" + std::string(pool_key(r));
}
inline std::string router_name(const InferenceCluster& c) {
  return c.name + "-epp";
}
inline std::string kvstore_name(const InferenceCluster& c) {
  return c.name + "-kvstore";
}
inline std::string inference_pool_name(const InferenceCluster& c) {
  return c.name;
}
inline std::string model_path_in_pod(const InferenceCluster& c) {
  return std::string(kModelMountPath) + "/" + c.model.file_name();
}

}  // namespace llmd::cluster::k8s
