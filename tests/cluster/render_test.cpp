// The rendered manifests hold together as Kubernetes needs them to: known kinds, required fields,
// selectors that match their pods, Service and probe ports that exist, an InferencePool that
// points at the model servers and the router, a kustomization that lists every file — and the
// real `llmd render` writes the same bytes every time, which `kubectl kustomize` accepts.
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cli/cli_test_util.hpp"
#include "cluster/render_k8s.hpp"
#include "cluster/spec.hpp"
#include "common/error.hpp"
#include "router/config.hpp"

namespace llmd::cluster {
namespace {

namespace fs = std::filesystem;
using cli_test::run_llmd;
using cli_test::TempDir;

const fs::path kExamples = fs::path(LLMD_SOURCE_DIR) / "examples";
const std::vector<std::string> kExampleNames = {"demo", "aggregated", "sim-fleet"};

struct Obj {
  std::string file;
  YAML::Node node;
  std::string kind() const { return node["kind"].as<std::string>(); }
  std::string name() const { return node["metadata"]["name"].as<std::string>(); }
};

struct Rendered {
  std::vector<RenderedFile> files;
  std::vector<Obj> objects;  // every file but kustomization.yaml
  YAML::Node kustomization;

  std::vector<const Obj*> of_kind(std::string_view kind) const {
    std::vector<const Obj*> out;
    for (const Obj& o : objects)
      if (o.kind() == kind) out.push_back(&o);
    return out;
  }
  const Obj& get(std::string_view kind, std::string_view name) const {
    for (const Obj& o : objects)
      if (o.kind() == kind && o.name() == name) return o;
    throw std::runtime_error("no " + std::string(kind) + " " + std::string(name));
  }
};

Rendered render_example(const std::string& name) {
  Rendered r;
  r.files = render_kubernetes(load_inference_cluster(kExamples / (name + ".yaml")));
  for (const RenderedFile& f : r.files) {
    const YAML::Node n = YAML::Load(f.text);
    if (f.name == "kustomization.yaml")
      r.kustomization = n;
    else
      r.objects.push_back({f.name, n});
  }
  return r;
}

std::map<std::string, std::string> string_map(const YAML::Node& n) {
  std::map<std::string, std::string> m;
  for (const auto& kv : n) m[kv.first.as<std::string>()] = kv.second.as<std::string>();
  return m;
}

// Every key of `selector` is in `labels` with the same value.
bool selects(const YAML::Node& selector, const YAML::Node& labels) {
  const auto l = string_map(labels);
  for (const auto& [k, v] : string_map(selector)) {
    const auto it = l.find(k);
    if (it == l.end() || it->second != v) return false;
  }
  return !string_map(selector).empty();
}

struct PodTemplate {
  std::string workload;
  YAML::Node labels, spec;
};

std::vector<PodTemplate> pod_templates(const Rendered& r) {
  std::vector<PodTemplate> out;
  for (const Obj& o : r.objects)
    if (o.kind() == "Deployment" || o.kind() == "StatefulSet")
      out.push_back(
          {o.name(), o.node["spec"]["template"]["metadata"]["labels"], o.node["spec"]["template"]["spec"]});
  return out;
}

// A port reference (a name or a number) that one of the container's ports answers to.
bool container_has_port(const YAML::Node& container, const YAML::Node& ref) {
  for (const auto& p : container["ports"]) {
    if (ref.Tag() == "!" || !std::isdigit(static_cast<unsigned char>(ref.Scalar()[0]))) {
      if (p["name"] && p["name"].as<std::string>() == ref.as<std::string>()) return true;
    } else if (p["containerPort"].as<int>() == ref.as<int>()) {
      return true;
    }
  }
  return false;
}

bool pod_has_port(const YAML::Node& pod_spec, const YAML::Node& ref) {
  for (const auto& c : pod_spec["containers"])
    if (container_has_port(c, ref)) return true;
  return false;
}

std::vector<std::string> container_args(const YAML::Node& container) {
  std::vector<std::string> out;
  for (const auto& a : container["args"]) out.push_back(a.as<std::string>());
  return out;
}

const std::set<std::pair<std::string, std::string>> kKnownKinds = {
    {"apps/v1", "Deployment"}, {"apps/v1", "StatefulSet"},
    {"v1", "Service"},         {"v1", "ConfigMap"},
    {"v1", "ServiceAccount"},  {"inference.networking.k8s.io/v1", "InferencePool"},
};

void check_schema_facts(const Rendered& r) {
  std::set<std::string> names_by_kind;
  for (const Obj& o : r.objects) {
    SCOPED_TRACE(o.file);
    ASSERT_TRUE(o.node.IsMap());
    ASSERT_TRUE(o.node["apiVersion"] && o.node["kind"]);
    EXPECT_TRUE(kKnownKinds.contains({o.node["apiVersion"].as<std::string>(), o.kind()}))
        << o.node["apiVersion"] << " " << o.kind();
    ASSERT_TRUE(o.node["metadata"]["name"]);
    const std::string name = o.name();
    // Services need a DNS-1035 label (a letter first); every name here is one.
    EXPECT_TRUE(name.size() <= 63 && std::islower(static_cast<unsigned char>(name[0])) &&
                name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos)
        << name;
    EXPECT_TRUE(names_by_kind.insert(o.kind() + "/" + name).second) << "twice: " << name;
    EXPECT_FALSE(o.node["metadata"]["namespace"]) << "the kustomization sets the namespace";
  }

  for (const Obj& o : r.objects) {
    if (o.kind() != "Deployment" && o.kind() != "StatefulSet") continue;
    SCOPED_TRACE(o.file);
    const YAML::Node spec = o.node["spec"];
    ASSERT_TRUE(spec["selector"]["matchLabels"]);
    ASSERT_TRUE(spec["template"]["metadata"]["labels"]);
    EXPECT_TRUE(selects(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"]));
    EXPECT_GE(spec["replicas"].as<int>(), 0);
    if (o.kind() == "StatefulSet") {
      EXPECT_NO_THROW(r.get("Service", spec["serviceName"].as<std::string>()));
    }
    const YAML::Node pod = spec["template"]["spec"];
    ASSERT_TRUE(pod["containers"].IsSequence());
    ASSERT_GE(pod["containers"].size(), 1u);
    std::set<std::string> volumes;
    for (const auto& v : pod["volumes"]) {
      volumes.insert(v["name"].as<std::string>());
      if (v["configMap"]) {
        EXPECT_NO_THROW(r.get("ConfigMap", v["configMap"]["name"].as<std::string>()));
      }
    }
    if (pod["serviceAccountName"]) {
      EXPECT_NO_THROW(r.get("ServiceAccount", pod["serviceAccountName"].as<std::string>()));
    }
    for (const auto& c : pod["containers"]) {
      ASSERT_TRUE(c["name"] && c["image"]) << c;
      EXPECT_FALSE(c["image"].as<std::string>().empty());
      std::set<std::string> port_names;
      for (const auto& p : c["ports"]) {
        EXPECT_TRUE(port_names.insert(p["name"].as<std::string>()).second);
        EXPECT_LE(p["name"].as<std::string>().size(), 15u);  // IANA_SVC_NAME
        EXPECT_GT(p["containerPort"].as<int>(), 0);
      }
      for (const char* probe : {"startupProbe", "readinessProbe", "livenessProbe"}) {
        const YAML::Node pr = c[probe];
        if (!pr) continue;
        SCOPED_TRACE(probe);
        const YAML::Node ref = pr["httpGet"]     ? pr["httpGet"]["port"]
                               : pr["tcpSocket"] ? pr["tcpSocket"]["port"]
                                                 : pr["grpc"]["port"];
        ASSERT_TRUE(ref);
        EXPECT_TRUE(container_has_port(c, ref)) << ref;
        if (pr["grpc"]) {
          EXPECT_NE(ref.Tag(), "!") << "a gRPC probe takes a port number";
        }
      }
      for (const auto& m : c["volumeMounts"]) EXPECT_TRUE(volumes.contains(m["name"].as<std::string>())) << m;
    }
  }

  const std::vector<PodTemplate> pods = pod_templates(r);
  for (const Obj* s : r.of_kind("Service")) {
    SCOPED_TRACE(s->file);
    const YAML::Node spec = s->node["spec"];
    ASSERT_TRUE(spec["selector"]);
    int selected = 0;
    for (const PodTemplate& p : pods) {
      if (!selects(spec["selector"], p.labels)) continue;
      ++selected;
      for (const auto& port : spec["ports"]) {
        ASSERT_TRUE(port["port"] && port["targetPort"]);
        EXPECT_TRUE(pod_has_port(p.spec, port["targetPort"]))
            << p.workload << " lacks " << port["targetPort"];
      }
    }
    EXPECT_GE(selected, 1) << "selects no pods";
  }

  // The InferencePool: every model server and nothing else; their serving port; the router.
  const std::vector<const Obj*> ips = r.of_kind("InferencePool");
  ASSERT_EQ(ips.size(), 1u);
  const YAML::Node ip = ips[0]->node["spec"];
  ASSERT_TRUE(ip["selector"]["matchLabels"]);
  ASSERT_EQ(ip["targetPorts"].size(), 1u);
  EXPECT_EQ(ip["targetPorts"][0]["number"].as<int>(), 8000);
  int servers = 0;
  for (const PodTemplate& p : pods) {
    const bool is_server = p.labels["llmd.dev/component"].as<std::string>() == "model-server";
    EXPECT_EQ(selects(ip["selector"]["matchLabels"], p.labels), is_server) << p.workload;
    if (!is_server) continue;
    ++servers;
    EXPECT_TRUE(pod_has_port(p.spec, ip["targetPorts"][0]["number"])) << p.workload;
  }
  EXPECT_GE(servers, 1);
  const YAML::Node epp = ip["endpointPickerRef"];
  EXPECT_EQ(epp["kind"].as<std::string>(), "Service");
  EXPECT_EQ(epp["failureMode"].as<std::string>(), "FailClose");
  const Obj& epp_svc = r.get("Service", epp["name"].as<std::string>());
  bool exposed = false;
  for (const auto& port : epp_svc.node["spec"]["ports"])
    exposed = exposed || port["port"].as<int>() == epp["port"]["number"].as<int>();
  EXPECT_TRUE(exposed) << "the router Service lacks port " << epp["port"]["number"];
  EXPECT_EQ(epp["port"]["number"].as<int>(), 9002);

  // The kustomization lists exactly the rendered files, in order.
  std::vector<std::string> listed, rendered;
  for (const auto& f : r.kustomization["resources"]) listed.push_back(f.as<std::string>());
  for (const Obj& o : r.objects) rendered.push_back(o.file);
  EXPECT_EQ(listed, rendered);
  EXPECT_EQ(r.files.back().name, "kustomization.yaml");
  EXPECT_EQ(r.kustomization["apiVersion"].as<std::string>(), "kustomize.config.k8s.io/v1beta1");
  EXPECT_EQ(r.kustomization["kind"].as<std::string>(), "Kustomization");

  // The router's config is what its parser accepts.
  const Obj& cm = r.get("ConfigMap", epp_svc.name());
  EXPECT_NO_THROW(router::parse_endpoint_picker_config(cm.node["data"]["epp.yaml"].as<std::string>()));
}

TEST(RenderK8s, SchemaFactsOfEveryExample) {
  for (const std::string& e : kExampleNames) {
    SCOPED_TRACE(e);
    check_schema_facts(render_example(e));
  }
}

TEST(RenderK8s, DemoObjects) {
  const Rendered r = render_example("demo");
  std::vector<std::string> files;
  for (const RenderedFile& f : r.files) files.push_back(f.name);
  EXPECT_EQ(files, (std::vector<std::string>{
                       "prefill-deployment.yaml", "prefill-service.yaml", "decode-deployment.yaml",
                       "decode-service.yaml", "epp-configmap.yaml", "epp-serviceaccount.yaml",
                       "epp-deployment.yaml", "epp-service.yaml", "inferencepool.yaml",
                       "kvstore-statefulset.yaml", "kvstore-service.yaml", "kustomization.yaml"}));
  EXPECT_FALSE(r.kustomization["namespace"]);

  const YAML::Node prefill = r.get("Deployment", "demo-prefill").node["spec"];
  EXPECT_EQ(prefill["replicas"].as<int>(), 1);
  EXPECT_EQ(prefill["selector"]["matchLabels"]["llm-d.ai/role"].as<std::string>(), "prefill");
  EXPECT_EQ(prefill["template"]["metadata"]["labels"]["llm-d.ai/inferenceServing"].as<std::string>(), "true");
  const YAML::Node pod = prefill["template"]["spec"];
  EXPECT_EQ(pod["terminationGracePeriodSeconds"].as<int>(), 30);
  const YAML::Node c = pod["containers"][0];
  EXPECT_EQ(c["image"].as<std::string>(), "ghcr.io/llmd/llmd:latest");
  EXPECT_EQ(c["command"][0].as<std::string>(), "llmd");
  EXPECT_EQ(container_args(c), (std::vector<std::string>{"serve",
                                                         "--model",
                                                         "/models/stories260K.gguf",
                                                         "--served-model-name",
                                                         "stories260K",
                                                         "--host",
                                                         "0.0.0.0",
                                                         "--port",
                                                         "8000",
                                                         "--role",
                                                         "prefill",
                                                         "--threads",
                                                         "1",
                                                         "--kv-transfer",
                                                         "auto",
                                                         "--kv-transfer-host",
                                                         "0.0.0.0",
                                                         "--kv-transfer-port",
                                                         "5600",
                                                         "--kv-transfer-advertise-host",
                                                         "$(POD_IP)",
                                                         "--max-num-seqs",
                                                         "8"}));
  EXPECT_EQ(c["env"][0]["name"].as<std::string>(), "POD_IP");
  EXPECT_EQ(c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"].as<std::string>(), "status.podIP");
  EXPECT_EQ(c["env"][1]["name"].as<std::string>(), "LLMD_KV_TRANSFER_SECRET");
  EXPECT_EQ(c["env"][1]["valueFrom"]["secretKeyRef"]["name"].as<std::string>(), "demo-kv-transfer");
  EXPECT_EQ(c["env"][1]["valueFrom"]["secretKeyRef"]["key"].as<std::string>(), "secret");
  EXPECT_EQ(c["ports"][1]["name"].as<std::string>(), "kv-transfer");
  EXPECT_EQ(c["ports"][1]["containerPort"].as<int>(), 5600);
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"].as<std::string>(), "/health");
  EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"].as<std::string>(), "/health");
  EXPECT_EQ(c["resources"]["requests"]["cpu"].as<std::string>(), "1");
  EXPECT_EQ(c["resources"]["requests"]["memory"].as<std::string>(), "1Gi");
  EXPECT_EQ(c["resources"]["limits"]["memory"].as<std::string>(), "1Gi");
  EXPECT_FALSE(c["resources"]["limits"]["cpu"]);
  EXPECT_EQ(pod["volumes"][0]["persistentVolumeClaim"]["claimName"].as<std::string>(), "demo-models");
  EXPECT_EQ(c["volumeMounts"][0]["mountPath"].as<std::string>(), "/models");

  const YAML::Node decode =
      r.get("Deployment", "demo-decode").node["spec"]["template"]["spec"]["containers"][0];
  EXPECT_EQ(container_args(decode)[10], "decode");

  const YAML::Node headless = r.get("Service", "demo-decode").node["spec"];
  EXPECT_EQ(headless["clusterIP"].as<std::string>(), "None");
  EXPECT_EQ(headless["selector"]["llm-d.ai/role"].as<std::string>(), "decode");

  const YAML::Node router = r.get("Deployment", "demo-epp").node["spec"]["template"]["spec"];
  EXPECT_EQ(router["serviceAccountName"].as<std::string>(), "demo-epp");
  EXPECT_EQ(container_args(router["containers"][0]),
            (std::vector<std::string>{"route", "--host", "0.0.0.0", "--port", "9090", "--extproc-port",
                                      "9002", "--config", "/etc/llmd/epp.yaml", "--endpoints-dns",
                                      "demo-prefill:8000;role=prefill,demo-decode:8000;role=decode",
                                      "--tokenizer", "/models/stories260K.gguf"}));
  EXPECT_EQ(router["containers"][0]["readinessProbe"]["grpc"]["port"].as<int>(), 9002);
  const YAML::Node svc = r.get("Service", "demo-epp").node["spec"];
  EXPECT_EQ(svc["ports"][0]["port"].as<int>(), 9002);
  EXPECT_EQ(svc["ports"][0]["appProtocol"].as<std::string>(), "kubernetes.io/h2c");
  EXPECT_EQ(svc["ports"][1]["port"].as<int>(), 9090);
  EXPECT_FALSE(r.get("ServiceAccount", "demo-epp").node["automountServiceAccountToken"].as<bool>());

  const YAML::Node kv = r.get("StatefulSet", "demo-kvstore").node["spec"];
  EXPECT_EQ(kv["replicas"].as<int>(), 1);
  EXPECT_EQ(container_args(kv["template"]["spec"]["containers"][0]),
            (std::vector<std::string>{"kvstore", "--port", "7600"}));
}

TEST(RenderK8s, AggregatedObjects) {
  const Rendered r = render_example("aggregated");
  EXPECT_EQ(r.kustomization["namespace"].as<std::string>(), "llmd");
  EXPECT_TRUE(r.of_kind("StatefulSet").empty());  // no kvstore
  const YAML::Node pod = r.get("Deployment", "chat-aggregated").node["spec"]["template"]["spec"];
  EXPECT_EQ(pod["terminationGracePeriodSeconds"].as<int>(), 60);
  EXPECT_EQ(pod["nodeSelector"]["nvidia.com/gpu.product"].as<std::string>(), "NVIDIA-H100-80GB-HBM3");
  EXPECT_EQ(pod["tolerations"][0]["key"].as<std::string>(), "nvidia.com/gpu");
  EXPECT_EQ(pod["tolerations"][0]["operator"].as<std::string>(), "Exists");
  const YAML::Node c = pod["containers"][0];
  EXPECT_EQ(c["image"].as<std::string>(), "ghcr.io/llmd/llmd:v0.1.0");
  EXPECT_EQ(c["resources"]["requests"]["nvidia.com/gpu"].as<int>(), 1);
  EXPECT_EQ(c["resources"]["limits"]["nvidia.com/gpu"].as<int>(), 1);
  EXPECT_EQ(c["resources"]["limits"]["memory"].as<std::string>(), "32Gi");
  EXPECT_FALSE(c["env"]);  // no KV transfer in an aggregated pool
  EXPECT_EQ(
      container_args(c),
      (std::vector<std::string>{"serve", "--model", "/models/llama-3.1-8b-instruct-q4_0.gguf",
                                "--served-model-name", "llama-3.1-8b-instruct", "--host", "0.0.0.0", "--port",
                                "8000", "--role", "both", "--threads", "8", "--kv-events-endpoint",
                                "tcp://0.0.0.0:5557", "--max-num-seqs", "64", "--max-seq-len", "8192"}));
  EXPECT_EQ(pod["volumes"][0]["persistentVolumeClaim"]["claimName"].as<std::string>(), "llama-models");
  const std::vector<std::string> route =
      container_args(r.get("Deployment", "chat-epp").node["spec"]["template"]["spec"]["containers"][0]);
  EXPECT_EQ(route[10], "chat-aggregated:8000;role=both");
  EXPECT_EQ(route.back(), "5557");
  EXPECT_EQ(route[route.size() - 2], "--kv-events-port");
}

TEST(RenderK8s, SimFleetObjects) {
  const Rendered r = render_example("sim-fleet");
  const YAML::Node d = r.get("Deployment", "sim-fleet-aggregated").node["spec"];
  EXPECT_EQ(d["replicas"].as<int>(), 16);
  const YAML::Node pod = d["template"]["spec"];
  EXPECT_FALSE(pod["volumes"]);
  EXPECT_EQ(container_args(pod["containers"][0]),
            (std::vector<std::string>{
                "serve", "--sim", "--served-model-name", "sim-model", "--host", "0.0.0.0", "--port", "8000",
                "--role", "both", "--sim-prefill-ms-per-token", "0.05", "--sim-decode-ms-per-step", "20"}));
  const YAML::Node router = r.get("Deployment", "sim-fleet-epp").node["spec"]["template"]["spec"];
  EXPECT_EQ(router["volumes"].size(), 1u);  // the config only: a simulated model has no tokenizer file
  EXPECT_EQ(container_args(router["containers"][0]).size(), 11u);
}

TEST(RenderK8s, HostPathVolumeAndUcx) {
  const std::string base =
      "apiVersion: llmd.dev/v1alpha1\nkind: InferenceCluster\nmetadata: {name: h}\nspec:\n"
      "  model: {path: m.gguf, volume: {hostPath: /srv/models}}\n";
  const auto files = render_kubernetes(parse_inference_cluster(base + "  aggregated: {}\n", "/"));
  const YAML::Node d = YAML::Load(files[0].text);
  const YAML::Node vol = d["spec"]["template"]["spec"]["volumes"][0];
  EXPECT_EQ(vol["hostPath"]["path"].as<std::string>(), "/srv/models");
  EXPECT_EQ(vol["hostPath"]["type"].as<std::string>(), "Directory");

  // ucx goes to every server as it is (pods on other nodes reach each other over the network).
  const auto pd = render_kubernetes(
      parse_inference_cluster(base + "  prefill: {}\n  decode: {}\n  transport: {type: ucx}\n", "/"));
  int servers = 0;
  for (const RenderedFile& f : pd) {
    const YAML::Node n = YAML::Load(f.text);
    if (!n["kind"] || n["kind"].as<std::string>() != "Deployment" ||
        !n["spec"]["template"]["metadata"]["labels"]["llm-d.ai/role"])
      continue;
    const auto args = container_args(n["spec"]["template"]["spec"]["containers"][0]);
    const auto it = std::find(args.begin(), args.end(), "--kv-transfer");
    ASSERT_NE(it, args.end()) << f.name;
    ASSERT_NE(it + 1, args.end());
    EXPECT_EQ(*(it + 1), "ucx") << f.name;
    ++servers;
  }
  EXPECT_EQ(servers, 2);
}

TEST(RenderK8s, SameBytesEveryTime) {
  for (const std::string& e : kExampleNames) {
    const auto spec = kExamples / (e + ".yaml");
    const auto a = render_kubernetes(load_inference_cluster(spec));
    const auto b = render_kubernetes(load_inference_cluster(spec));
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].name, b[i].name);
      EXPECT_EQ(a[i].text, b[i].text);
    }
  }
}

// Every flag a rendered command uses is one the command has (`llmd serve --help`, `llmd route --help`).
bool help_lists(const std::string& help, const std::string& flag) {
  for (std::size_t pos = help.find(flag); pos != std::string::npos; pos = help.find(flag, pos + 1)) {
    const char before = pos == 0 ? ' ' : help[pos - 1];
    const char after = pos + flag.size() < help.size() ? help[pos + flag.size()] : '\n';
    if ((before == ' ' || before == ',') && (after == ' ' || after == '\n' || after == ',')) return true;
  }
  return false;
}

TEST(RenderCli, RenderedFlagsExist) {
  TempDir dir;
  const auto serve = run_llmd({"serve", "--help"}, dir);
  const auto route = run_llmd({"route", "--help"}, dir);
  ASSERT_EQ(serve.exit_code, 0) << serve.err;
  ASSERT_EQ(route.exit_code, 0) << route.err;
  int checked = 0;
  for (const std::string& e : kExampleNames) {
    const Rendered r = render_example(e);
    for (const PodTemplate& p : pod_templates(r)) {
      for (const auto& c : p.spec["containers"]) {
        const std::vector<std::string> args = container_args(c);
        if (args[0] == "kvstore") continue;  // arrives with the tiered-cache issue
        const std::string& help = args[0] == "serve" ? serve.out : route.out;
        ASSERT_TRUE(args[0] == "serve" || args[0] == "route") << args[0];
        for (const std::string& a : args) {
          if (!a.starts_with("--")) continue;
          EXPECT_TRUE(help_lists(help, a)) << "llmd " << args[0] << " has no " << a;
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 40);
  EXPECT_FALSE(help_lists(serve.out, "--no-such-flag"));
}

TEST(RenderCli, WritesTheSameFilesTwiceAndKubectlKustomizeAcceptsThem) {
  const bool have_kubectl = std::system("command -v kubectl >/dev/null 2>&1") == 0;
  for (const std::string& e : kExampleNames) {
    SCOPED_TRACE(e);
    TempDir dir;
    const fs::path spec = kExamples / (e + ".yaml");
    const fs::path a = dir.path() / "a", b = dir.path() / "b";
    for (const fs::path& out : {a, b}) {
      const auto r =
          run_llmd({"render", spec.string(), "--target", "kubernetes", "--out", out.string()}, dir);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.err, "");
    }
    const auto expected = render_kubernetes(load_inference_cluster(spec));
    std::set<std::string> on_disk;
    for (const auto& f : fs::directory_iterator(a)) on_disk.insert(f.path().filename().string());
    std::set<std::string> want;
    for (const RenderedFile& f : expected) {
      want.insert(f.name);
      EXPECT_EQ(cli_test::slurp(a / f.name), f.text) << f.name;
      EXPECT_EQ(cli_test::slurp(b / f.name), f.text) << f.name;
    }
    EXPECT_EQ(on_disk, want);
    if (!have_kubectl) continue;
    const fs::path log = dir.path() / "kustomize.out";
    const int rc = std::system(("kubectl kustomize " + a.string() + " >" + log.string() + " 2>&1").c_str());
    EXPECT_EQ(rc, 0) << cli_test::slurp(log);
    EXPECT_NE(cli_test::slurp(log).find("kind: InferencePool"), std::string::npos);
  }
  if (!have_kubectl) GTEST_SKIP() << "kubectl is not installed: the kustomize check did not run";
}

TEST(RenderCli, BadSpecGivesOneLine) {
  TempDir dir;
  const fs::path bad = dir.path() / "bad.yaml";
  std::ofstream(bad) << "apiVersion: llmd.dev/v1alpha1\nkind: InferenceCluster\nmetadata: {name: b}\nspec:\n"
                        "  model: {sim: true}\n  prefill: {}\n  decode: {replicas: -1}\n";
  const fs::path out = dir.path() / "out";
  auto r = run_llmd({"render", bad.string(), "--target", "kubernetes", "--out", out.string()}, dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "llmd render: " + bad.string() + ": spec.decode.replicas: must be ≥ 0\n");
  EXPECT_FALSE(fs::exists(out));

  r = run_llmd({"render", "/nonexistent/spec.yaml", "--out", out.string()}, dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "llmd render: /nonexistent/spec.yaml: cannot read: No such file or directory\n");

  r = run_llmd({"render", (kExamples / "demo.yaml").string(), "--target", "helm", "--out", out.string()},
               dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "llmd: error: --target must be kubernetes (got 'helm')\n");
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace llmd::cluster
