#pragma once
// The scheduling framework of llm-d's inference scheduler: per request, a profile handler chooses
// which scheduling profiles to run (one, or decode then prefill for P/D); a profile filters the
// fit endpoints, scores the survivors (each scorer in [0,1], total = Σ weight × score) and lets a
// picker rank them. Plugins are named instances of a type, configured by EndpointPickerConfig.
//
// Threading: the scheduler calls plugins under its own lock, one request at a time; a plugin only
// needs its own locking for state it shares with other threads (e.g. endpoint observers).
#include <algorithm>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "router/endpoint.hpp"
#include "router/request.hpp"

namespace llmd::router {

// Blocks of the prompt each endpoint is believed to hold, filled by whichever prefix scorer ran
// (prefix-based-pd-decider and no-hit-lru-scorer read it). A flat list the scheduler keeps from
// pass to pass: a pass allocates nothing once it has seen as many endpoints before.
class PrefixBlocks {
 public:
  void clear() { held_.clear(); }
  // What a scorer found for `eps`, replacing what an earlier scorer of the pass said of them.
  void record(std::span<Endpoint* const> eps, std::span<const double> blocks) {
    const bool first = held_.empty();  // the usual pass: one prefix scorer, distinct endpoints
    for (std::size_t i = 0; i < eps.size(); ++i) {
      auto it = first ? held_.end() : std::find_if(held_.begin(), held_.end(), [&](const auto& h) {
        return h.first == eps[i]->id();
      });
      if (it == held_.end())
        held_.emplace_back(eps[i]->id(), blocks[i]);
      else
        it->second = blocks[i];
    }
  }
  std::optional<double> find(EndpointId id) const {
    for (const auto& [e, b] : held_)
      if (e == id) return b;
    return std::nullopt;
  }
  bool any_held() const {
    return std::any_of(held_.begin(), held_.end(), [](const auto& h) { return h.second > 0; });
  }

 private:
  std::vector<std::pair<EndpointId, double>> held_;
};

// Per-request scratch shared by the plugins of one scheduling pass.
struct SchedContext {
  const SchedRequest& req;
  SteadyNs now;
  std::mt19937_64& rng;
  PrefixBlocks& prefix_blocks;
};

using Candidates = std::vector<Endpoint*>;

class Plugin {
 public:
  virtual ~Plugin() = default;
  const std::string& type() const { return type_; }
  const std::string& name() const { return name_; }
  void set_identity(std::string type, std::string name) {
    type_ = std::move(type);
    name_ = std::move(name);
  }

 private:
  std::string type_, name_;
};

class Filter : public virtual Plugin {
 public:
  virtual void filter(SchedContext& ctx, Candidates& endpoints) = 0;  // removes in place
};

class Scorer : public virtual Plugin {
 public:
  // out[i] in [0,1] for endpoints[i]; the scheduler clamps anyway.
  virtual void score(SchedContext& ctx, std::span<Endpoint* const> endpoints, std::span<double> out) = 0;
  // Scorers that fill ctx.prefix_blocks run before the others of their profile, which may read it.
  virtual bool fills_prefix_blocks() const { return false; }
};

class Picker : public virtual Plugin {
 public:
  // Reorders endpoints best first (scores[i] belongs to endpoints[i]); the first is the target,
  // the next are fallbacks. Returns how many the EPP should name (maxNumOfEndpoints).
  virtual std::size_t pick(SchedContext& ctx, Candidates& endpoints, std::vector<double>& scores) = 0;
};

// Told of the outcome of every scheduling pass (the approximate prefix index learns from it).
class PreRequest : public virtual Plugin {
 public:
  struct Outcome {
    const Endpoint* target = nullptr;   // the primary profile's pick
    const Endpoint* prefill = nullptr;  // P/D: the prefill leg's pick, if any
  };
  virtual void pre_request(SchedContext& ctx, const Outcome& o) = 0;
};

// Told when an endpoint leaves the set, to drop what it kept for it (the approximate prefix index,
// LRUs). Endpoint ids are never reused, so without this the state of departed pods would pile up.
class EndpointObserver : public virtual Plugin {
 public:
  virtual void endpoint_removed(EndpointId id) = 0;
};

// Decides whether a P/D request needs a separate prefill (prefix-based-pd-decider).
class PdDecider : public virtual Plugin {
 public:
  virtual bool disaggregate(SchedContext& ctx, const Endpoint& decode) = 0;
};

struct ProfileResult {
  std::string profile;
  Candidates ranked;  // best first
  std::size_t max_endpoints = 1;
};

// Runs one named profile (the scheduler provides it to profile handlers).
class ProfileRunner {
 public:
  virtual ~ProfileRunner() = default;
  virtual bool has(std::string_view profile) const = 0;
  virtual std::span<const std::string_view> profiles() const = 0;  // in configuration order
  virtual std::optional<ProfileResult> run(std::string_view profile,
                                           SchedContext& ctx) = 0;  // nullopt: none fit
};

struct SchedResult {
  ProfileResult primary;                 // where the request (its decode) goes
  std::optional<ProfileResult> prefill;  // P/D: where its prefill goes
};

class ProfileHandler : public virtual Plugin {
 public:
  // nullopt when no endpoint fits the primary profile.
  virtual std::optional<SchedResult> schedule(SchedContext& ctx, ProfileRunner& runner) = 0;
  // The profiles it needs to exist (checked at configuration).
  virtual std::vector<std::string> required_profiles() const = 0;
};

// Saturation: when it says so, requests are refused with 429 before scheduling.
class SaturationDetector : public virtual Plugin {
 public:
  virtual bool saturated(std::span<Endpoint* const> fit, SteadyNs now) = 0;
};

}  // namespace llmd::router
