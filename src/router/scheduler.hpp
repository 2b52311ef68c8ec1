#pragma once
// Builds the plugins and profiles of an EndpointPickerConfig and schedules requests with them:
// fit endpoints (reachable, fresh metrics) → saturation check → profile handler → per profile
// filters → weighted scorers → picker.
//
// Threading: schedule() is safe from any thread; passes run one at a time under the scheduler's
// lock (a pass over 100 endpoints takes microseconds), so plugins see one request at a time.
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "router/config.hpp"
#include "router/endpoint_set.hpp"
#include "router/plugin.hpp"
#include "router/plugin_registry.hpp"

namespace llmd::router {

struct SchedulerConfig {
  static constexpr std::chrono::seconds kDefaultStaleness{2};
  std::chrono::nanoseconds staleness = kDefaultStaleness;  // older metrics make an endpoint unfit
  std::optional<uint64_t> seed;                            // tie-breaking; random when unset
};

class Scheduler {
 public:
  // Throws llmd::Error naming what is wrong with the configuration.
  Scheduler(const EndpointPickerConfig& config, const PluginEnv& env, SchedulerConfig sc = {});
  ~Scheduler();

  enum class Status { kOk, kNoEndpoint, kShed };
  struct Decision {
    Status status = Status::kNoEndpoint;
    SchedResult result;
    double predicted_hit = 0;  // blocks the target holds / the prompt's blocks
  };
  Decision schedule(const SchedRequest& req, const EndpointList& endpoints);
  // The endpoint left: plugins drop their state of it.
  void endpoint_removed(EndpointId id);

  std::shared_ptr<Plugin> plugin(std::string_view name) const;  // nullptr when absent

  struct Profile;

 private:
  class Runner;
  SchedulerConfig cfg_;
  std::vector<std::shared_ptr<Plugin>> plugins_;
  std::vector<std::unique_ptr<Profile>> profiles_;
  std::vector<std::string_view> profile_names_;  // into profiles_
  std::shared_ptr<ProfileHandler> handler_;
  std::shared_ptr<SaturationDetector> detector_;
  std::vector<PreRequest*> pre_request_;
  std::vector<EndpointObserver*> observers_;
  std::mutex mu_;
  std::mt19937_64 rng_;
  // A pass's scratch, kept from request to request (guarded by mu_, as the pass is).
  PrefixBlocks prefix_blocks_;
  std::vector<double> total_, part_;
};

}  // namespace llmd::router
