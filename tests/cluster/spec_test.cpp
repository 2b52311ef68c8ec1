// The InferenceCluster parser: every broken spec is refused with the exact message naming its
// field; the examples parse to the values they say; defaults are filled in.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cluster/router_config.hpp"
#include "cluster/spec.hpp"
#include "common/error.hpp"

namespace llmd::cluster {
namespace {

namespace fs = std::filesystem;

const fs::path kExamples = fs::path(LLMD_SOURCE_DIR) / "examples";

// A whole document around `spec`, whose lines are written at the spec's own indentation (two).
std::string doc(const std::string& spec, const std::string& name = "t") {
  return "apiVersion: llmd.dev/v1alpha1\nkind: InferenceCluster\nmetadata:\n  name: " + name + "\nspec:\n" +
         spec;
}

const std::string kSimPd = "  model: {sim: true}\n  prefill: {}\n  decode: {}\n";
const std::string kSimAgg = "  model: {sim: true}\n  aggregated: {}\n";

std::string error_of(const std::string& yaml) {
  try {
    parse_inference_cluster(yaml, "/specs");
  } catch (const Error& e) {
    return e.what();
  }
  return "(parsed)";
}

struct Broken {
  std::string yaml, error;
};

TEST(SpecParse, BrokenSpecsNameTheirField) {
  const std::vector<Broken> cases = {
      {doc("  model: {sim: true}\n  prefill: {}\n  decode: {replicas: -1}\n"),
       "spec.decode.replicas: must be ≥ 0"},
      {doc("  model: {sim: true}\n  prefill: {}\n  decode: {replica: 1}\n"),
       "spec.decode.replica: unknown field"},
      {doc("  model: {sim: true}\n  aggregated: {replicas: two}\n"),
       "spec.aggregated.replicas: must be an integer (got \"two\")"},
      {doc("  model: {sim: true}\n  aggregated: {replicas: \"2\"}\n"),
       "spec.aggregated.replicas: must be an integer (got \"2\")"},
      {doc("  model: {sim: true}\n  aggregated: {}\n  prefill: {}\n  decode: {}\n"),
       "spec.aggregated: cannot be combined with spec.prefill and spec.decode"},
      {doc("  model: {sim: true}\n  prefill: {}\n"), "spec.decode: required with spec.prefill"},
      {doc("  model: {sim: true}\n  decode: {}\n"), "spec.prefill: required with spec.decode"},
      {doc("  model: {sim: true}\n"), "spec: needs spec.aggregated, or spec.prefill and spec.decode"},
      {doc("  model: {sim: true}\n  decode: [1]\n  prefill: {}\n"),
       "spec.decode: must be a mapping (got a list)"},
      {doc(kSimPd + "  transport: {type: rdma}\n"),
       "spec.transport.type: must be one of tcp, shm, ucx, auto (got \"rdma\")"},
      {doc(kSimPd + "  transport: {secretRef: My_Secret}\n"),
       "spec.transport.secretRef: must be a Secret name (a DNS-1123 subdomain) (got \"My_Secret\")"},
      {doc("  model: {sim: true}\n  prefill: {}\n  decode: {resources: {memory: 4GB}}\n"),
       "spec.decode.resources.memory: must be a Kubernetes quantity such as 512Mi or 4Gi (got \"4GB\")"},
      {doc("  model: {sim: true}\n  prefill: {resources: {cpu: \"0\"}}\n  decode: {}\n"),
       "spec.prefill.resources.cpu: must be > 0 (got \"0\")"},
      {doc("  model: {sim: true}\n  aggregated: {resources: {gpu: -1}}\n"),
       "spec.aggregated.resources.gpu: must be ≥ 0"},
      {doc("  model: {sim: true}\n  aggregated: {resources: {disk: 1Gi}}\n"),
       "spec.aggregated.resources.disk: unknown field"},
      {doc("  model: {sim: true}\n  prefill: {}\n  decode: {args: --max-num-seqs}\n"),
       "spec.decode.args: must be a list (got \"--max-num-seqs\")"},
      {doc("  model: {sim: true}\n  prefill: {}\n  decode: {args: [--max-num-seqs, \"4\", --port=9000]}\n"),
       "spec.decode.args[2]: --port is set from the spec; it cannot be given in args"},
      {doc("  model: {sim: true}\n  aggregated:\n    tolerations: [{key: gpu, operator: In}]\n"),
       "spec.aggregated.tolerations[0].operator: must be one of Equal, Exists (got \"In\")"},
      {doc("  model: {sim: true}\n  aggregated:\n    tolerations: [{operator: Equal, value: x}]\n"),
       "spec.aggregated.tolerations[0]: a toleration without key needs operator Exists"},
      {doc("  model: {sim: true}\n  aggregated:\n    nodeSelector: {zone: a b}\n"),
       "spec.aggregated.nodeSelector.zone: must be a label value (got \"a b\")"},
      {doc(kSimAgg + "  autoscaling:\n    aggregated: {min: 5, max: 2}\n"),
       "spec.autoscaling.aggregated.min: must be ≤ max (5 > 2)"},
      {doc(kSimAgg + "  autoscaling:\n    aggregated: {min: 1}\n"),
       "spec.autoscaling.aggregated.max: required"},
      {doc("  model: {sim: true}\n  aggregated: {replicas: 0}\n  autoscaling:\n    aggregated: {max: 0}\n"),
       "spec.autoscaling.aggregated.max: must be ≥ min, 1 by default"},
      {doc(kSimAgg + "  autoscaling:\n    aggregated: {max: 4, slo: {itlP90Ms: 0}}\n"),
       "spec.autoscaling.aggregated.slo.itlP90Ms: must be > 0"},
      {doc(kSimAgg + "  autoscaling:\n    aggregated: {max: 4, slo: {ttftP99Ms: 100}}\n"),
       "spec.autoscaling.aggregated.slo.ttftP99Ms: unknown field"},
      {doc(kSimAgg + "  autoscaling:\n    decode: {max: 4}\n"),
       "spec.autoscaling.decode: there is no spec.decode pool"},
      {doc("  model: {sim: true}\n  aggregated: {replicas: 6}\n  autoscaling:\n    aggregated: {min: 2, max: "
           "4}\n"),
       "spec.aggregated.replicas: must be within spec.autoscaling.aggregated (2..4)"},
      {doc("  prefill: {}\n  decode: {}\n"), "spec.model: required"},
      {doc("  model: {servedName: m}\n  aggregated: {}\n"),
       "spec.model: needs path (a GGUF file) or sim: true"},
      {doc("  model: {sim: yes}\n  aggregated: {}\n"), "spec.model.sim: must be true or false (got \"yes\")"},
      {doc("  model: {path: m.gguf, volume: {claimName: a, hostPath: /b}}\n  aggregated: {}\n"),
       "spec.model.volume: needs one of claimName or hostPath"},
      {doc("  model: {path: m.gguf, volume: {hostPath: models}}\n  aggregated: {}\n"),
       "spec.model.volume.hostPath: must be an absolute path (got \"models\")"},
      {doc("  model: {sim: true, volume: {claimName: models}}\n  aggregated: {}\n"),
       "spec.model.volume: needs spec.model.path (the file to find in it)"},
      {doc(kSimAgg, "Demo_1"),
       "metadata.name: must be a DNS-1123 label of at most 40 characters starting with a letter (a-z, 0-9 "
       "and "
       "'-') (got \"Demo_1\")"},
      {doc(kSimAgg, "1demo"),
       "metadata.name: must be a DNS-1123 label of at most 40 characters starting with a letter (a-z, 0-9 "
       "and "
       "'-') (got \"1demo\")"},
      {doc(kSimAgg, std::string(41, 'a')),
       "metadata.name: must be a DNS-1123 label of at most 40 characters starting with a letter (a-z, 0-9 "
       "and "
       "'-') (got \"" +
           std::string(41, 'a') + "\")"},
      {"apiVersion: v1\nkind: InferenceCluster\nmetadata: {name: t}\nspec: {}\n",
       "apiVersion: must be llmd.dev/v1alpha1 (got \"v1\")"},
      {"apiVersion: llmd.dev/v1alpha1\nkind: Deployment\nmetadata: {name: t}\nspec: {}\n",
       "kind: must be InferenceCluster (got \"Deployment\")"},
      {"apiVersion: llmd.dev/v1alpha1\nkind: InferenceCluster\nspec: {}\n", "metadata: required"},
      {"apiVersion: llmd.dev/v1alpha1\nkind: InferenceCluster\nmetadata: {labels: {a: b}}\nspec: {}\n",
       "metadata.labels: unknown field"},
      {"kind: InferenceCluster\n", "apiVersion: required"},
      {"- a\n- b\n", "the document must be a mapping (an InferenceCluster) (got a list)"},
      {doc(kSimAgg + "  gateway: {}\n"), "spec.gateway: unknown field"},
      {doc("  model: {sim: true}\n  prefill: {}\n  decode:\n    replicas: 1\n    replicas: 2\n"),
       "spec.decode.replicas: given twice"},
      {doc(kSimAgg + "  cache:\n    tiers: [{type: ssd, size: 1Gi}]\n"),
       "spec.cache.tiers[0].type: must be one of host, disk, remote (got \"ssd\")"},
      {doc(kSimAgg + "  cache:\n    tiers: [{type: disk, size: 1Gi}, {type: host, size: 1Gi}]\n"),
       "spec.cache.tiers[1].type: tiers go in the order host, disk, remote (\"host\" after \"disk\")"},
      {doc(kSimAgg + "  cache:\n    tiers: [{type: host, size: 1Gi}, {type: host, size: 2Gi}]\n"),
       "spec.cache.tiers[1].type: \"host\" is listed twice"},
      {doc(kSimAgg + "  cache:\n    tiers: [{type: host}]\n"), "spec.cache.tiers[0].size: required"},
      {doc(kSimAgg + "  cache:\n    tiers: [{type: disk, size: lots}]\n"),
       "spec.cache.tiers[0].size: must be a Kubernetes quantity such as 8Gi (got \"lots\")"},
      {doc(kSimAgg + "  cache:\n    tiers: [{type: remote, size: 8Gi}]\n"),
       "spec.cache.tiers[0]: the remote tier needs spec.cache.kvstore.replicas > 0"},
      {doc(kSimAgg + "  cache:\n    kvstore: {replicas: -2}\n"), "spec.cache.kvstore.replicas: must be ≥ 0"},
      {doc(kSimAgg + "  router:\n    config: {}\n    configFile: epp.yaml\n"),
       "spec.router: set config or configFile, not both"},
      {doc(kSimAgg + "  router:\n    config: [a]\n"),
       "spec.router.config: must be a mapping (an EndpointPickerConfig) (got a list)"},
      {doc(kSimAgg + "  router:\n    config:\n      plugins:\n      - name: x\n"),
       "spec.router.config: plugins[0].type: required"},
      {doc(kSimAgg + "  router:\n    config:\n      plugins:\n      - type: queue-scorer\n      - type: "
                     "queue-scorer\n"),
       "spec.router.config: plugins[1].name: 'queue-scorer' is used twice"},
      {doc(kSimAgg +
           "  router:\n    config:\n      plugins: [{type: queue-scorer, type: max-score-picker}]\n"),
       "spec.router.config.plugins[0].type: given twice"},
      {doc(kSimAgg + "  router:\n    configFile: missing/epp.yaml\n"),
       "spec.router.configFile: cannot read \"/specs/missing/epp.yaml\": No such file or directory"},
      {doc(kSimAgg + "  router:\n    args: [--extproc-port, \"9000\"]\n"),
       "spec.router.args[0]: --extproc-port is set from the spec; it cannot be given in args"},
      {doc(kSimAgg + "  image: \"\"\n"), "spec.image: must not be empty"},
      {doc("  model: {sim: true}\n  aggregated: {}\n   bad: indent\n"), "line 8: end of map not found"},
      {doc("  model: {sim: true\n  aggregated: {}\n"), "line 7: end of map flow not found"},
  };
  for (const Broken& c : cases) {
    SCOPED_TRACE(c.yaml);
    EXPECT_EQ(error_of(c.yaml), c.error);
  }
}

TEST(SpecParse, FillsDefaults) {
  const InferenceCluster c =
      parse_inference_cluster(doc("  model: {path: models/m.gguf}\n  prefill: {}\n  decode: {}\n"), "/specs");
  EXPECT_EQ(c.name, "t");
  EXPECT_EQ(c.namespace_name, "");
  EXPECT_EQ(c.image, "ghcr.io/llmd/llmd:latest");
  EXPECT_EQ(c.model.path, "models/m.gguf");
  EXPECT_EQ(c.model.local_path, "/specs/models/m.gguf");
  EXPECT_EQ(c.model.file_name(), "m.gguf");
  EXPECT_EQ(c.model.served_name, "m");
  EXPECT_FALSE(c.model.sim);
  ASSERT_TRUE(c.model.volume);
  EXPECT_EQ(c.model.volume->claim_name, "t-models");
  EXPECT_EQ(c.model.volume->host_path, "");
  ASSERT_EQ(c.pools.size(), 2u);
  EXPECT_TRUE(c.disaggregated());
  EXPECT_EQ(c.pools[0].role, Role::kPrefill);
  EXPECT_EQ(c.pools[1].role, Role::kDecode);
  for (const Pool& p : c.pools) {
    EXPECT_EQ(p.replicas, 1);
    EXPECT_TRUE(p.args.empty());
    EXPECT_TRUE(p.placement.resources.empty());
    EXPECT_EQ(p.termination_grace_seconds, 30);
    EXPECT_FALSE(p.autoscaling);
  }
  EXPECT_EQ(c.transport.type, TransportType::kAuto);
  EXPECT_EQ(c.transport.secret_ref, "t-kv-transfer");
  EXPECT_TRUE(c.cache.tiers.empty());
  EXPECT_EQ(c.cache.kvstore.replicas, 0);
  EXPECT_EQ(c.router.replicas, 1);
  EXPECT_EQ(c.router.config_yaml, default_disaggregated_router_config());
  EXPECT_EQ(c.router.config_file, "");
  EXPECT_FALSE(c.router.uses_kv_events);

  const InferenceCluster a = parse_inference_cluster(doc(kSimAgg), "/specs");
  ASSERT_EQ(a.pools.size(), 1u);
  EXPECT_EQ(a.pools[0].role, Role::kBoth);
  EXPECT_FALSE(a.disaggregated());
  EXPECT_EQ(a.model.served_name, "sim-model");
  EXPECT_FALSE(a.model.volume);
  EXPECT_EQ(a.router.config_yaml, default_aggregated_router_config());
}

TEST(SpecParse, NullSectionsTakeTheirDefaults) {
  const InferenceCluster c =
      parse_inference_cluster(doc("  model: {sim: true}\n  aggregated:\n  router:\n"), "/");
  ASSERT_EQ(c.pools.size(), 1u);
  EXPECT_EQ(c.pools[0].replicas, 1);
  EXPECT_EQ(c.router.replicas, 1);
}

// The inline config reaches the router as the author typed it: quoted strings stay strings.
TEST(SpecParse, InlineRouterConfigIsReEmittedWithItsTypes) {
  const InferenceCluster c = parse_inference_cluster(doc(kSimAgg + R"(  router:
    config:
      plugins:
      - type: prefix-cache-scorer
        parameters: {blockSize: "64", maxPrefixBlocksToMatch: 128, autoTune: false}
      - {type: max-score-picker, name: "yes"}
      schedulingProfiles:
      - {name: default, plugins: [{pluginRef: prefix-cache-scorer, weight: 2.5}, {pluginRef: "yes"}]}
)"),
                                                     "/");
  EXPECT_EQ(c.router.config_yaml, R"(plugins:
- type: prefix-cache-scorer
  parameters:
    blockSize: "64"
    maxPrefixBlocksToMatch: 128
    autoTune: false
- type: max-score-picker
  name: "yes"
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
    weight: 2.5
  - pluginRef: "yes"
)");
}

TEST(SpecParse, ReadsRouterConfigFileRelativeToTheSpec) {
  const InferenceCluster c = load_inference_cluster(kExamples / "aggregated.yaml");
  EXPECT_EQ(c.router.config_file, "aggregated-epp.yaml");
  EXPECT_EQ(c.router.config_local_path, (kExamples / "aggregated-epp.yaml").lexically_normal().string());
  std::ifstream in(kExamples / "aggregated-epp.yaml");
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_EQ(c.router.config_yaml, text);
  EXPECT_TRUE(c.router.uses_kv_events);  // precise-prefix-cache-scorer
}

TEST(SpecParse, UnreadableFile) {
  try {
    load_inference_cluster("/nonexistent/spec.yaml");
    FAIL() << "parsed";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "cannot read: No such file or directory");
  }
}

TEST(SpecExamples, Demo) {
  const InferenceCluster c = load_inference_cluster(kExamples / "demo.yaml");
  EXPECT_EQ(c.name, "demo");
  EXPECT_EQ(c.model.path, "../../shared/models/stories260K.gguf");
  EXPECT_EQ(c.model.local_path,
            (kExamples / "../../shared/models/stories260K.gguf").lexically_normal().string());
  EXPECT_EQ(c.model.served_name, "stories260K");
  ASSERT_EQ(c.pools.size(), 2u);
  EXPECT_EQ(c.pools[0].role, Role::kPrefill);
  EXPECT_EQ(c.pools[0].replicas, 1);
  EXPECT_EQ(c.pools[0].args, (std::vector<std::string>{"--max-num-seqs", "8"}));
  EXPECT_EQ(c.pools[0].placement.resources.cpu, "1");
  EXPECT_EQ(c.pools[0].placement.resources.memory, "1Gi");
  EXPECT_EQ(c.pools[1].role, Role::kDecode);
  EXPECT_EQ(c.transport.type, TransportType::kShm);
  ASSERT_EQ(c.cache.tiers.size(), 2u);
  EXPECT_EQ(c.cache.tiers[0].type, TierType::kHost);
  EXPECT_EQ(c.cache.tiers[0].size, "1Gi");
  EXPECT_EQ(c.cache.tiers[1].type, TierType::kRemote);
  EXPECT_EQ(c.cache.tiers[1].size, "4Gi");
  EXPECT_EQ(c.cache.kvstore.replicas, 1);
  ASSERT_TRUE(c.pools[0].autoscaling);
  EXPECT_EQ(c.pools[0].autoscaling->min, 1);
  EXPECT_EQ(c.pools[0].autoscaling->max, 2);
  EXPECT_EQ(c.pools[0].autoscaling->slo.ttft_p90_ms, 500.0);
  EXPECT_FALSE(c.pools[0].autoscaling->slo.itl_p90_ms);
  ASSERT_TRUE(c.pools[1].autoscaling);
  EXPECT_EQ(c.pools[1].autoscaling->max, 4);
  EXPECT_EQ(c.pools[1].autoscaling->slo.itl_p90_ms, 50.0);
  EXPECT_NE(c.router.config_yaml.find("nonCachedTokens: 64\n"), std::string::npos) << c.router.config_yaml;
}

TEST(SpecExamples, Aggregated) {
  const InferenceCluster c = load_inference_cluster(kExamples / "aggregated.yaml");
  EXPECT_EQ(c.name, "chat");
  EXPECT_EQ(c.namespace_name, "llmd");
  EXPECT_EQ(c.image, "ghcr.io/llmd/llmd:v0.1.0");
  ASSERT_TRUE(c.model.volume);
  EXPECT_EQ(c.model.volume->claim_name, "llama-models");
  ASSERT_EQ(c.pools.size(), 1u);
  const Pool& p = c.pools[0];
  EXPECT_EQ(p.role, Role::kBoth);
  EXPECT_EQ(p.replicas, 2);
  EXPECT_EQ(p.placement.resources.gpu, 1);
  EXPECT_EQ(p.placement.node_selector.at("nvidia.com/gpu.product"), "NVIDIA-H100-80GB-HBM3");
  ASSERT_EQ(p.placement.tolerations.size(), 1u);
  EXPECT_EQ(p.placement.tolerations[0].key, "nvidia.com/gpu");
  EXPECT_EQ(p.placement.tolerations[0].op, "Exists");
  EXPECT_EQ(p.placement.tolerations[0].effect, "NoSchedule");
  EXPECT_EQ(p.termination_grace_seconds, 60);
  ASSERT_TRUE(p.autoscaling);
  EXPECT_EQ(p.autoscaling->max, 8);
}

TEST(SpecExamples, SimFleet) {
  const InferenceCluster c = load_inference_cluster(kExamples / "sim-fleet.yaml");
  EXPECT_EQ(c.name, "sim-fleet");
  EXPECT_TRUE(c.model.sim);
  EXPECT_EQ(c.model.path, "");
  EXPECT_FALSE(c.model.volume);
  ASSERT_EQ(c.pools.size(), 1u);
  EXPECT_EQ(c.pools[0].replicas, 16);
  EXPECT_EQ(c.pools[0].placement.resources.cpu, "100m");
}

}  // namespace
}  // namespace llmd::cluster
