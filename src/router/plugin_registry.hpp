#pragma once
// Plugin types by llm-d's names, built from their `parameters`. Parameters are read through
// Params, which refuses unknown keys (naming them) so a typo never silently means a default;
// llm-d parameters llmd accepts but does not need are listed as ignored.
#include <chrono>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "router/plugin.hpp"

namespace llmd::router {

class KvIndex;

// Services plugins may use; owned by the router, alive as long as the plugins.
struct PluginEnv {
  KvIndex* kv_index = nullptr;  // fed by KV events (precise-prefix-cache-scorer)
};

class Params {
 public:
  Params(const nlohmann::json& j, std::string_view where);  // j: an object or null
  int64_t integer(std::string_view key, int64_t def, int64_t min, int64_t max);
  double number(std::string_view key, double def, double min, double max);
  bool boolean(std::string_view key, bool def);
  std::string string(std::string_view key, std::string def);
  const nlohmann::json* object(std::string_view key);  // nullptr when absent
  const nlohmann::json* raw(std::string_view key);     // any type; nullptr when absent
  void ignore(std::initializer_list<std::string_view> keys);
  // Throws llmd::Error naming the first key nobody asked for.
  void done() const;

 private:
  const nlohmann::json* find(std::string_view key);
  const nlohmann::json& j_;
  std::string where_;
  std::vector<std::string> used_;
};

// A Go duration as llm-d writes them ("200ms", "2s", "1.5s", "500us"); throws naming `where`.
std::chrono::nanoseconds parse_duration(const std::string& text, std::string_view where);

using PluginLookup = std::function<std::shared_ptr<Plugin>(std::string_view name)>;

// Throws llmd::Error for an unknown type (listing the known ones) or bad parameters.
std::shared_ptr<Plugin> make_plugin(std::string_view type, const std::string& name,
                                    const nlohmann::json& params, const PluginEnv& env);
std::vector<std::string> plugin_types();

// Implemented next to each plugin family; make_plugin tries them in turn (nullptr: not mine).
std::shared_ptr<Plugin> make_filter(std::string_view type, Params& p, const PluginEnv& env);
std::shared_ptr<Plugin> make_load_scorer(std::string_view type, Params& p, const PluginEnv& env);
std::shared_ptr<Plugin> make_prefix_scorer(std::string_view type, Params& p, const PluginEnv& env);
std::shared_ptr<Plugin> make_picker(std::string_view type, Params& p, const PluginEnv& env);
std::shared_ptr<Plugin> make_profile_plugin(std::string_view type, Params& p, const PluginEnv& env);

// Plugins that refer to others by name (profile handlers to deciders) resolve them here, after
// every plugin exists.
class NeedsLookup {
 public:
  virtual ~NeedsLookup() = default;
  virtual void resolve(const PluginLookup& lookup) = 0;
};

}  // namespace llmd::router
