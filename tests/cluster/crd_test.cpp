// deploy/crds/inferencecluster.yaml describes the fields the parser accepts, no more and no fewer,
// and the examples fit its schema.
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <set>
#include <span>
#include <string>

#include "cluster/spec_keys.hpp"

namespace llmd::cluster {
namespace {

namespace fs = std::filesystem;

const fs::path kSource = LLMD_SOURCE_DIR;

YAML::Node load_crd() {
  return YAML::LoadFile((kSource / "deploy/crds/inferencecluster.yaml").string());
}

YAML::Node spec_schema(const YAML::Node& crd) {
  return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
}

std::set<std::string> set_of(std::span<const std::string_view> keys) {
  return {keys.begin(), keys.end()};
}

// Each object of the schema (by its path, list items as "[]") and the keys the parser takes there.
const std::map<std::string, std::set<std::string>>& expected_objects() {
  static const auto* m = [] {
    auto* out = new std::map<std::string, std::set<std::string>>{
        {"spec", set_of(keys::kSpec)},
        {"spec.model", set_of(keys::kModel)},
        {"spec.model.volume", set_of(keys::kModelVolume)},
        {"spec.transport", set_of(keys::kTransport)},
        {"spec.cache", set_of(keys::kCache)},
        {"spec.cache.tiers[]", set_of(keys::kTier)},
        {"spec.cache.kvstore", set_of(keys::kKvStore)},
        {"spec.cache.kvstore.resources", set_of(keys::kResources)},
        {"spec.cache.kvstore.tolerations[]", set_of(keys::kToleration)},
        {"spec.router", set_of(keys::kRouter)},
        {"spec.router.resources", set_of(keys::kResources)},
        {"spec.router.tolerations[]", set_of(keys::kToleration)},
        {"spec.autoscaling", set_of(keys::kAutoscalingPools)},
    };
    for (const char* pool : {"prefill", "decode", "aggregated"}) {
      const std::string p = std::string("spec.") + pool;
      (*out)[p] = set_of(keys::kPool);
      (*out)[p + ".resources"] = set_of(keys::kResources);
      (*out)[p + ".tolerations[]"] = set_of(keys::kToleration);
      (*out)["spec.autoscaling." + std::string(pool)] = set_of(keys::kAutoscaling);
      (*out)["spec.autoscaling." + std::string(pool) + ".slo"] = set_of(keys::kSlo);
    }
    return out;
  }();
  return *m;
}

void walk(const YAML::Node& schema, const std::string& path, std::set<std::string>& seen) {
  if (schema["items"]) walk(schema["items"], path + "[]", seen);
  if (!schema["properties"]) return;
  seen.insert(path);
  const auto it = expected_objects().find(path);
  ASSERT_NE(it, expected_objects().end())
      << "the CRD describes " << path << ", which the parser does not have";
  std::set<std::string> props;
  for (const auto& kv : schema["properties"]) props.insert(kv.first.as<std::string>());
  EXPECT_EQ(props, it->second) << path;
  for (const auto& kv : schema["properties"]) walk(kv.second, path + "." + kv.first.as<std::string>(), seen);
}

TEST(Crd, Header) {
  const YAML::Node crd = load_crd();
  EXPECT_EQ(crd["apiVersion"].as<std::string>(), "apiextensions.k8s.io/v1");
  EXPECT_EQ(crd["kind"].as<std::string>(), "CustomResourceDefinition");
  EXPECT_EQ(crd["metadata"]["name"].as<std::string>(), "inferenceclusters.llmd.dev");
  EXPECT_EQ(crd["spec"]["group"].as<std::string>(), "llmd.dev");
  EXPECT_EQ(crd["spec"]["scope"].as<std::string>(), "Namespaced");
  EXPECT_EQ(crd["spec"]["names"]["kind"].as<std::string>(), "InferenceCluster");
  EXPECT_EQ(crd["spec"]["names"]["plural"].as<std::string>(), "inferenceclusters");
  ASSERT_EQ(crd["spec"]["versions"].size(), 1u);
  const YAML::Node v = crd["spec"]["versions"][0];
  EXPECT_EQ(v["name"].as<std::string>(), "v1alpha1");
  EXPECT_TRUE(v["served"].as<bool>());
  EXPECT_TRUE(v["storage"].as<bool>());
  const YAML::Node root = v["schema"]["openAPIV3Schema"];
  std::set<std::string> top;
  for (const auto& kv : root["properties"]) top.insert(kv.first.as<std::string>());
  EXPECT_EQ(top, set_of(keys::kRoot));
}

TEST(Crd, DescribesExactlyTheParsersFields) {
  std::set<std::string> seen;
  walk(spec_schema(load_crd()), "spec", seen);
  for (const auto& [path, keys] : expected_objects())
    EXPECT_TRUE(seen.contains(path)) << "the CRD lacks " << path;
}

TEST(Crd, EnumsAreTheParsersValues) {
  const YAML::Node s = spec_schema(load_crd())["properties"];
  auto values = [](const YAML::Node& n) {
    std::set<std::string> out;
    for (const auto& v : n["enum"]) out.insert(v.as<std::string>());
    return out;
  };
  EXPECT_EQ(values(s["transport"]["properties"]["type"]),
            (std::set<std::string>{"tcp", "shm", "ucx", "auto"}));
  EXPECT_EQ(values(s["cache"]["properties"]["tiers"]["items"]["properties"]["type"]),
            (std::set<std::string>{"host", "disk", "remote"}));
  EXPECT_EQ(values(s["decode"]["properties"]["tolerations"]["items"]["properties"]["operator"]),
            (std::set<std::string>{"Equal", "Exists"}));
}

// A small structural check of a document against the schema (types, properties, required,
// enum, minimum), enough to catch an example the CRD would refuse.
void validate(const YAML::Node& doc, const YAML::Node& schema, const std::string& path) {
  if (schema["x-kubernetes-preserve-unknown-fields"]) return;
  if (schema["x-kubernetes-int-or-string"]) {
    EXPECT_TRUE(doc.IsScalar()) << path;
    return;
  }
  const std::string type = schema["type"] ? schema["type"].as<std::string>() : "";
  if (type == "object") {
    ASSERT_TRUE(doc.IsMap()) << path;
    for (const auto& r : schema["required"]) EXPECT_TRUE(doc[r.as<std::string>()]) << path << " needs " << r;
    for (const auto& kv : doc) {
      const std::string k = kv.first.as<std::string>();
      if (schema["properties"]) {
        ASSERT_TRUE(schema["properties"][k]) << path << "." << k << " is not in the CRD";
        validate(kv.second, schema["properties"][k], path + "." + k);
      } else if (schema["additionalProperties"]) {
        validate(kv.second, schema["additionalProperties"], path + "." + k);
      }
    }
  } else if (type == "array") {
    ASSERT_TRUE(doc.IsSequence()) << path;
    for (std::size_t i = 0; i < doc.size(); ++i)
      validate(doc[i], schema["items"], path + "[" + std::to_string(i) + "]");
  } else if (type == "integer") {
    const long v = doc.as<long>();
    if (schema["minimum"]) {
      EXPECT_GE(v, schema["minimum"].as<long>()) << path;
    }
  } else if (type == "number") {
    EXPECT_NO_THROW(doc.as<double>()) << path;
  } else if (type == "boolean") {
    EXPECT_NO_THROW(doc.as<bool>()) << path;
  } else if (type == "string") {
    ASSERT_TRUE(doc.IsScalar()) << path;
    if (schema["enum"]) {
      bool found = false;
      for (const auto& e : schema["enum"]) found = found || e.as<std::string>() == doc.as<std::string>();
      EXPECT_TRUE(found) << path << ": " << doc;
    }
  }
}

TEST(Crd, ExamplesFitTheSchema) {
  const YAML::Node schema = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
  for (const char* e : {"demo", "aggregated", "sim-fleet"}) {
    SCOPED_TRACE(e);
    validate(YAML::LoadFile((kSource / "examples" / (std::string(e) + ".yaml")).string()), schema, "");
  }
}

}  // namespace
}  // namespace llmd::cluster
