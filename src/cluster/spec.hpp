#pragma once
// InferenceCluster (apiVersion llmd.dev/v1alpha1): one description of a whole llmd deployment —
// model servers (aggregated, or prefill + decode pools), the router, KV transfer, cache tiers and
// autoscaling bounds — that `llmd render` turns into Kubernetes manifests and `llmd up` runs as
// local processes. The types hold the spec with every default filled in, so a consumer never has
// to know a default; the parser (spec_parse.cpp) is the one place that fills them.
//
// deploy/crds/inferencecluster.yaml is the same schema as a CustomResourceDefinition.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmd::cluster {

inline constexpr std::string_view kApiVersion = "llmd.dev/v1alpha1";
inline constexpr std::string_view kKind = "InferenceCluster";
inline constexpr std::string_view kDefaultImage = "ghcr.io/llmd/llmd:latest";
// Object names are metadata.name plus a suffix ("-aggregated", "-kvstore"); a StatefulSet's name
// must leave room for the pod's controller-revision-hash label (63 characters in all).
inline constexpr std::size_t kMaxNameLength = 40;

// Kubernetes quantities, kept as written ("500m", "4Gi"); empty: not requested.
struct Resources {
  std::string cpu, memory;
  int32_t gpu = 0;  // whole devices (nvidia.com/gpu on Kubernetes)
  bool empty() const { return cpu.empty() && memory.empty() && gpu == 0; }
};

// Kubernetes' core/v1 Toleration, fields as the API names them.
struct Toleration {
  std::string key;
  std::string op;  // "operator": Equal or Exists; empty: the API's default (Equal)
  std::string value;
  std::string effect;  // NoSchedule, PreferNoSchedule, NoExecute; empty: all
  std::optional<int64_t> toleration_seconds;
};

// Where a workload's pods may run and what they ask for.
struct Placement {
  Resources resources;
  std::map<std::string, std::string> node_selector;  // sorted: rendered in a stable order
  std::vector<Toleration> tolerations;
};

enum class Role { kPrefill, kDecode, kBoth };
std::string_view role_name(Role r);  // llmd serve's --role and the llm-d.ai/role label value
std::string_view pool_key(Role r);   // the spec's key: prefill, decode, aggregated

struct Slo {
  std::optional<double> ttft_p90_ms;  // time to first token, 90th percentile
  std::optional<double> itl_p90_ms;   // inter-token latency, 90th percentile
};

struct Autoscaling {
  static constexpr int32_t kDefaultMin = 1;
  int32_t min = kDefaultMin;
  int32_t max = 0;  // required in the spec
  Slo slo;
};

// A pool of `llmd serve` processes of one role.
struct Pool {
  static constexpr int32_t kDefaultReplicas = 1;
  // Long enough for in-flight requests of a few hundred tokens to finish after SIGTERM.
  static constexpr int32_t kDefaultTerminationGraceSeconds = 30;

  Role role = Role::kBoth;
  int32_t replicas = kDefaultReplicas;
  std::vector<std::string> args;  // extra `llmd serve` flags, after the ones the spec sets
  Placement placement;
  int32_t termination_grace_seconds = kDefaultTerminationGraceSeconds;
  std::optional<Autoscaling> autoscaling;  // spec.autoscaling.<pool>
};

// Where the GGUF file lives on Kubernetes: a PersistentVolumeClaim or a directory of every node.
// The file is mounted at /models/<file name of path>.
struct ModelVolume {
  std::string claim_name;  // default: <metadata.name>-models
  std::string host_path;   // absolute; when set, claim_name is empty
};

struct ModelSpec {
  static constexpr std::string_view kDefaultSimServedName = "sim-model";  // llmd serve --sim's
  std::string path;        // as written; empty for a simulated model without a vocabulary file
  std::string local_path;  // path resolved against the spec file's folder (what `llmd up` opens)
  bool sim = false;
  std::string served_name;            // default: the file's stem, or sim-model
  std::optional<ModelVolume> volume;  // set when path is
  std::string file_name() const;      // the last component of path
};

enum class TransportType { kAuto, kTcp, kShm, kUcx };
std::string_view transport_name(TransportType t);

struct TransportSpec {
  static constexpr TransportType kDefaultType = TransportType::kAuto;
  // The key of the Secret that holds the shared KV transfer secret.
  static constexpr std::string_view kSecretKey = "secret";
  TransportType type = kDefaultType;
  // Kubernetes: the Secret's name (default <metadata.name>-kv-transfer). Local runs take the
  // secret from LLMD_KV_TRANSFER_SECRET or generate one per run.
  std::string secret_ref;
};

enum class TierType { kHost, kDisk, kRemote };
std::string_view tier_name(TierType t);

struct CacheTier {
  TierType type = TierType::kHost;
  std::string size;  // a Kubernetes quantity
};

struct KvStoreSpec {
  static constexpr int32_t kDefaultReplicas = 0;
  int32_t replicas = kDefaultReplicas;
  Placement placement;
};

struct CacheSpec {
  std::vector<CacheTier> tiers;  // in the order host, disk, remote; each at most once
  KvStoreSpec kvstore;
};

struct RouterSpec {
  static constexpr int32_t kDefaultReplicas = 1;
  int32_t replicas = kDefaultReplicas;
  std::vector<std::string> args;  // extra `llmd route` flags
  Placement placement;
  // The EndpointPickerConfig YAML: spec.router.config re-emitted, spec.router.configFile's text,
  // or, when neither is given, llmd's default for the pool style (router_config.hpp). Checked
  // with the router's own parser and plugin registry.
  std::string config_yaml;
  std::string config_file;        // as written; empty when not given
  std::string config_local_path;  // config_file resolved against the spec file's folder
  bool uses_kv_events = false;    // the config has precise-prefix-cache-scorer
};

struct InferenceCluster {
  std::string name;
  std::string namespace_name;  // metadata.namespace; empty: wherever it is applied
  std::string image{kDefaultImage};
  ModelSpec model;
  std::vector<Pool> pools;  // prefill then decode, or one aggregated pool (role both)
  TransportSpec transport;
  CacheSpec cache;
  RouterSpec router;

  bool disaggregated() const { return !pools.empty() && pools.front().role != Role::kBoth; }
  const Pool* pool(Role r) const;  // nullptr when absent
};

// Parses and validates; `base_dir` resolves relative paths (model.path, router.configFile). Throws
// llmd::Error whose message starts with the field path ("spec.decode.replicas: must be ≥ 0"), or
// with "line N:" for YAML that does not parse.
InferenceCluster parse_inference_cluster(std::string_view yaml, const std::filesystem::path& base_dir);
// Reads `file` and parses it with its folder as base_dir.
InferenceCluster load_inference_cluster(const std::filesystem::path& file);

}  // namespace llmd::cluster
