#include "router/plugin_registry.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "common/error.hpp"

namespace llmd::router {

Params::Params(const nlohmann::json& j, std::string_view where) : j_(j), where_(where) {
  if (!j.is_null() && !j.is_object()) fail("{}: parameters must be a mapping", where_);
}

const nlohmann::json* Params::find(std::string_view key) {
  used_.emplace_back(key);
  if (!j_.is_object()) return nullptr;
  const auto it = j_.find(key);
  return it == j_.end() || it->is_null() ? nullptr : &*it;
}

int64_t Params::integer(std::string_view key, int64_t def, int64_t min, int64_t max) {
  const nlohmann::json* v = find(key);
  if (!v) return def;
  if (!v->is_number_integer()) fail("{}: {} must be an integer", where_, key);
  const int64_t n = v->get<int64_t>();
  if (n < min || n > max) fail("{}: {} must be in [{}, {}], got {}", where_, key, min, max, n);
  return n;
}

double Params::number(std::string_view key, double def, double min, double max) {
  const nlohmann::json* v = find(key);
  if (!v) return def;
  if (!v->is_number()) fail("{}: {} must be a number", where_, key);
  const double d = v->get<double>();
  if (!(d >= min && d <= max)) fail("{}: {} must be in [{}, {}], got {}", where_, key, min, max, d);
  return d;
}

bool Params::boolean(std::string_view key, bool def) {
  const nlohmann::json* v = find(key);
  if (!v) return def;
  if (!v->is_boolean()) fail("{}: {} must be true or false", where_, key);
  return v->get<bool>();
}

std::string Params::string(std::string_view key, std::string def) {
  const nlohmann::json* v = find(key);
  if (!v) return def;
  if (!v->is_string()) fail("{}: {} must be a string", where_, key);
  return v->get<std::string>();
}

const nlohmann::json* Params::object(std::string_view key) {
  const nlohmann::json* v = find(key);
  if (v && !v->is_object()) fail("{}: {} must be a mapping", where_, key);
  return v;
}

const nlohmann::json* Params::raw(std::string_view key) {
  return find(key);
}

void Params::ignore(std::initializer_list<std::string_view> keys) {
  for (const std::string_view k : keys) used_.emplace_back(k);
}

void Params::done() const {
  if (!j_.is_object()) return;
  for (const auto& [k, v] : j_.items())
    if (std::find(used_.begin(), used_.end(), k) == used_.end())
      fail("{}: unknown parameter '{}'", where_, k);
}

std::chrono::nanoseconds parse_duration(const std::string& s, std::string_view where) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = s.substr(used);
  double scale = 0;
  if (unit == "ns")
    scale = 1;
  else if (unit == "us" || unit == "µs")
    scale = 1e3;
  else if (unit == "ms")
    scale = 1e6;
  else if (unit == "s")
    scale = 1e9;
  else if (unit == "m")
    scale = 60e9;
  if (used == 0 || scale == 0 || !(v >= 0)) fail("{}: '{}' is not a duration like 200ms or 2s", where, s);
  return std::chrono::nanoseconds(static_cast<int64_t>(v * scale));
}

std::shared_ptr<Plugin> make_plugin(std::string_view type, const std::string& name,
                                    const nlohmann::json& params, const PluginEnv& env) {
  Params p(params, fmt::format("plugin '{}' ({})", name, type));
  std::shared_ptr<Plugin> plugin;
  try {
    for (auto* make :
         {&make_filter, &make_load_scorer, &make_prefix_scorer, &make_picker, &make_profile_plugin})
      if ((plugin = make(type, p, env))) break;
  } catch (const nlohmann::json::exception& e) {  // a parameter of the wrong shape
    fail("plugin '{}' ({}): bad parameters: {}", name, type, e.what());
  }
  if (!plugin)
    fail("plugin '{}': unknown type '{}' (known: {})", name, type, fmt::join(plugin_types(), ", "));
  p.done();
  plugin->set_identity(std::string(type), name);
  return plugin;
}

std::vector<std::string> plugin_types() {
  return {"decode-filter",
          "prefill-filter",
          "label-selector-filter",
          "queue-scorer",
          "kv-cache-utilization-scorer",
          "load-aware-scorer",
          "active-request-scorer",
          "session-affinity-scorer",
          "no-hit-lru-scorer",
          "prefix-cache-scorer",
          "precise-prefix-cache-scorer",
          "max-score-picker",
          "random-picker",
          "weighted-random-picker",
          "single-profile-handler",
          "disagg-profile-handler",
          "pd-profile-handler",
          "prefix-based-pd-decider",
          "always-disagg-pd-decider",
          "utilization-detector"};
}

}  // namespace llmd::router
