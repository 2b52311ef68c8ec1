#pragma once
// The keys each mapping of an InferenceCluster may have: what the parser accepts (any other key
// is an "unknown field") and what deploy/crds/inferencecluster.yaml must list, which the tests
// hold it to.
#include <array>
#include <string_view>

namespace llmd::cluster::keys {

using K = std::string_view;

inline constexpr std::array<K, 4> kRoot = {"apiVersion", "kind", "metadata", "spec"};
inline constexpr std::array<K, 2> kMetadata = {"name", "namespace"};
inline constexpr std::array<K, 9> kSpec = {"image",     "model", "prefill", "decode",     "aggregated",
                                           "transport", "cache", "router",  "autoscaling"};
inline constexpr std::array<K, 4> kModel = {"path", "sim", "servedName", "volume"};
inline constexpr std::array<K, 2> kModelVolume = {"claimName", "hostPath"};
// spec.prefill, spec.decode, spec.aggregated.
inline constexpr std::array<K, 6> kPool = {"replicas",     "args",        "resources",
                                           "nodeSelector", "tolerations", "terminationGracePeriodSeconds"};
inline constexpr std::array<K, 3> kResources = {"cpu", "memory", "gpu"};
inline constexpr std::array<K, 5> kToleration = {"key", "operator", "value", "effect", "tolerationSeconds"};
inline constexpr std::array<K, 2> kTransport = {"type", "secretRef"};
inline constexpr std::array<K, 2> kCache = {"tiers", "kvstore"};
inline constexpr std::array<K, 2> kTier = {"type", "size"};
inline constexpr std::array<K, 4> kKvStore = {"replicas", "resources", "nodeSelector", "tolerations"};
inline constexpr std::array<K, 7> kRouter = {"config",    "configFile",   "replicas",   "args",
                                             "resources", "nodeSelector", "tolerations"};
inline constexpr std::array<K, 3> kAutoscalingPools = {"prefill", "decode", "aggregated"};
inline constexpr std::array<K, 3> kAutoscaling = {"min", "max", "slo"};
inline constexpr std::array<K, 2> kSlo = {"ttftP90Ms", "itlP90Ms"};

}  // namespace llmd::cluster::keys
