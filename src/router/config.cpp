#include "router/config.hpp"

#include <charconv>

#include <yaml-cpp/yaml.h>

#include "common/error.hpp"

namespace llmd::router {
namespace {

// YAML → JSON for plugin parameters: plain scalars become numbers and booleans where they read as
// such; quoted ones stay strings.
nlohmann::json to_json(const YAML::Node& n) {
  if (!n.IsDefined()) return nullptr;  // an absent key (yaml-cpp's "zombie" node throws on Type())
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Sequence: {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& x : n) a.push_back(to_json(x));
      return a;
    }
    case YAML::NodeType::Map: {
      nlohmann::json o = nlohmann::json::object();
      for (const auto& kv : n) o[kv.first.as<std::string>()] = to_json(kv.second);
      return o;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (n.Tag() == "!") return s;  // quoted
      if (s == "true" || s == "True") return true;
      if (s == "false" || s == "False") return false;
      if (s == "null" || s == "~") return nullptr;
      int64_t i = 0;
      if (auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), i);
          ec == std::errc() && p == s.data() + s.size())
        return i;
      double d = 0;
      if (auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
          ec == std::errc() && p == s.data() + s.size())
        return d;
      return s;
    }
  }
  return nullptr;
}

void only_keys(const YAML::Node& n, const std::string& where, std::initializer_list<std::string_view> keys) {
  if (!n.IsMap()) fail("{}: must be a mapping", where);
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) fail("{}.{}: unknown field", where, k);
  }
}

std::string string_field(const YAML::Node& n, const std::string& where, const char* key, bool required) {
  const YAML::Node v = n[key];
  if (!v) {
    if (required) fail("{}.{}: required", where, key);
    return {};
  }
  if (!v.IsScalar() || v.Scalar().empty()) fail("{}.{}: must be a non-empty string", where, key);
  return v.Scalar();
}

}  // namespace

EndpointPickerConfig parse_endpoint_picker_config(std::string_view text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    fail("EndpointPickerConfig: not YAML: {}", e.what());
  }
  EndpointPickerConfig c;
  try {
    only_keys(root, "EndpointPickerConfig",
              {"apiVersion", "kind", "featureGates", "plugins", "schedulingProfiles", "saturationDetector",
               "dataLayer", "flowControl", "parser"});
    const std::string api = string_field(root, "EndpointPickerConfig", "apiVersion", false);
    if (!api.empty() && api != "llm-d.ai/v1alpha1" && api != "inference.networking.x-k8s.io/v1alpha1")
      fail("apiVersion: '{}' is not llm-d.ai/v1alpha1", api);
    const std::string kind = string_field(root, "EndpointPickerConfig", "kind", false);
    if (!kind.empty() && kind != "EndpointPickerConfig") fail("kind: '{}' is not EndpointPickerConfig", kind);

    if (const YAML::Node ps = root["plugins"]) {
      if (!ps.IsSequence()) fail("plugins: must be a list");
      for (std::size_t i = 0; i < ps.size(); ++i) {
        const std::string where = fmt::format("plugins[{}]", i);
        only_keys(ps[i], where, {"type", "name", "parameters"});
        PluginSpec s;
        s.type = string_field(ps[i], where, "type", true);
        s.name = string_field(ps[i], where, "name", false);
        if (s.name.empty()) s.name = s.type;
        s.parameters = to_json(ps[i]["parameters"]);
        for (const PluginSpec& o : c.plugins)
          if (o.name == s.name) fail("{}.name: '{}' is used twice", where, s.name);
        c.plugins.push_back(std::move(s));
      }
    }
    if (const YAML::Node ps = root["schedulingProfiles"]) {
      if (!ps.IsSequence()) fail("schedulingProfiles: must be a list");
      for (std::size_t i = 0; i < ps.size(); ++i) {
        const std::string where = fmt::format("schedulingProfiles[{}]", i);
        only_keys(ps[i], where, {"name", "plugins"});
        ProfileSpec p;
        p.name = string_field(ps[i], where, "name", true);
        const YAML::Node refs = ps[i]["plugins"];
        if (refs && !refs.IsSequence()) fail("{}.plugins: must be a list", where);
        for (std::size_t j = 0; refs && j < refs.size(); ++j) {
          const std::string w = fmt::format("{}.plugins[{}]", where, j);
          only_keys(refs[j], w, {"pluginRef", "weight"});
          ProfilePluginRef r;
          r.plugin = string_field(refs[j], w, "pluginRef", true);
          if (const YAML::Node wt = refs[j]["weight"]) {
            const nlohmann::json v = to_json(wt);
            if (!v.is_number() || !(v.get<double>() >= 0)) fail("{}.weight: must be a number ≥ 0", w);
            r.weight = v.get<double>();
          }
          p.plugins.push_back(std::move(r));
        }
        for (const ProfileSpec& o : c.profiles)
          if (o.name == p.name) fail("{}.name: '{}' is used twice", where, p.name);
        c.profiles.push_back(std::move(p));
      }
    }
    if (const YAML::Node sd = root["saturationDetector"]) {
      only_keys(sd, "saturationDetector", {"pluginRef"});
      c.saturation_detector = string_field(sd, "saturationDetector", "pluginRef", true);
    }
  } catch (const YAML::Exception& e) {
    fail("EndpointPickerConfig: {}", e.what());
  }
  return c;
}

EndpointPickerConfig default_endpoint_picker_config() {
  EndpointPickerConfig c;
  for (const char* t : {"queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer",
                        "max-score-picker", "single-profile-handler"})
    c.plugins.push_back({t, t, nullptr});
  c.profiles.push_back({"default",
                        {{"queue-scorer", 2.0},
                         {"kv-cache-utilization-scorer", 2.0},
                         {"prefix-cache-scorer", 3.0},
                         {"max-score-picker", std::nullopt}}});
  return c;
}

}  // namespace llmd::router
