#include "router/scheduler.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace llmd::router {

struct Scheduler::Profile {
  std::string name;
  std::vector<Filter*> filters;
  std::vector<std::pair<Scorer*, double>> scorers;  // prefix-filling ones first
  Picker* picker = nullptr;
};

class Scheduler::Runner final : public ProfileRunner {
 public:
  Runner(Scheduler& s, const Candidates& fit) : s_(s), fit_(fit) {}
  bool has(std::string_view p) const override { return find(p) != nullptr; }
  std::span<const std::string_view> profiles() const override { return s_.profile_names_; }
  std::optional<ProfileResult> run(std::string_view name, SchedContext& ctx) override {
    const Profile* p = find(name);
    if (!p) return std::nullopt;
    ProfileResult r;
    r.profile = p->name;
    r.ranked = fit_;
    for (Filter* f : p->filters) {
      f->filter(ctx, r.ranked);
      if (r.ranked.empty()) return std::nullopt;
    }
    std::vector<double>& total = s_.total_;
    std::vector<double>& part = s_.part_;
    total.assign(r.ranked.size(), 0.0);
    part.resize(r.ranked.size());
    for (const auto& [scorer, weight] : p->scorers) {
      std::fill(part.begin(), part.end(), 0.0);
      scorer->score(ctx, r.ranked, part);
      for (std::size_t i = 0; i < total.size(); ++i) total[i] += weight * std::clamp(part[i], 0.0, 1.0);
    }
    r.max_endpoints = p->picker->pick(ctx, r.ranked, total);
    return r;
  }

 private:
  const Profile* find(std::string_view name) const {
    for (const auto& p : s_.profiles_)
      if (p->name == name) return p.get();
    return nullptr;
  }
  Scheduler& s_;
  const Candidates& fit_;
};

Scheduler::Scheduler(const EndpointPickerConfig& config, const PluginEnv& env, SchedulerConfig sc)
    : cfg_(sc), rng_(sc.seed ? *sc.seed : std::random_device{}()) {
  for (const PluginSpec& s : config.plugins)
    plugins_.push_back(make_plugin(s.type, s.name, s.parameters, env));
  auto lookup = [this](std::string_view name) {
    auto p = plugin(name);
    if (!p) fail("no plugin named '{}'", name);
    return p;
  };
  auto picker_of = [&]() -> Picker* {
    for (const auto& p : plugins_)
      if (auto* k = dynamic_cast<Picker*>(p.get())) return k;
    auto p = make_plugin("max-score-picker", "max-score-picker", nullptr, env);  // llm-d's default
    plugins_.push_back(p);
    return dynamic_cast<Picker*>(p.get());
  };

  std::vector<ProfileSpec> specs = config.profiles;
  if (specs.empty()) {  // llm-d: one "default" profile of every filter, scorer and picker
    ProfileSpec d{"default", {}};
    for (const PluginSpec& s : config.plugins) d.plugins.push_back({s.name, std::nullopt});
    specs.push_back(std::move(d));
  }
  for (const ProfileSpec& ps : specs) {
    auto prof = std::make_unique<Profile>();
    prof->name = ps.name;
    std::vector<std::pair<Scorer*, double>> later;
    for (const ProfilePluginRef& ref : ps.plugins) {
      std::shared_ptr<Plugin> p = plugin(ref.plugin);
      if (!p) fail("schedulingProfiles '{}': pluginRef '{}' names no plugin", ps.name, ref.plugin);
      bool used = false;
      if (auto* f = dynamic_cast<Filter*>(p.get())) prof->filters.push_back(f), used = true;
      if (auto* s = dynamic_cast<Scorer*>(p.get())) {
        (s->fills_prefix_blocks() ? prof->scorers : later).emplace_back(s, ref.weight.value_or(1.0));
        used = true;
      }
      if (auto* k = dynamic_cast<Picker*>(p.get())) {
        if (prof->picker) fail("schedulingProfiles '{}': more than one picker", ps.name);
        prof->picker = k, used = true;
      }
      const bool other = dynamic_cast<ProfileHandler*>(p.get()) || dynamic_cast<PdDecider*>(p.get()) ||
                         dynamic_cast<SaturationDetector*>(p.get());
      if (!used && !other)
        fail("schedulingProfiles '{}': plugin '{}' is not a filter, scorer or picker", ps.name, ref.plugin);
      if (!used && config.profiles.empty()) continue;  // the implicit default profile skips the others
      if (!used)
        fail("schedulingProfiles '{}': plugin '{}' ({}) cannot be in a profile", ps.name, ref.plugin,
             p->type());
    }
    prof->scorers.insert(prof->scorers.end(), later.begin(), later.end());
    if (!prof->picker) prof->picker = picker_of();
    profiles_.push_back(std::move(prof));
  }
  for (const auto& p : profiles_) profile_names_.push_back(p->name);

  for (const auto& p : plugins_) {
    if (auto h = std::dynamic_pointer_cast<ProfileHandler>(p)) {
      if (handler_) fail("more than one profile handler ('{}' and '{}')", handler_->name(), h->name());
      handler_ = h;
    }
    if (auto* pr = dynamic_cast<PreRequest*>(p.get())) pre_request_.push_back(pr);
    if (auto* ob = dynamic_cast<EndpointObserver*>(p.get())) observers_.push_back(ob);
    if (auto* n = dynamic_cast<NeedsLookup*>(p.get())) n->resolve(lookup);
  }
  if (!handler_) {
    if (profiles_.size() != 1)
      fail("{} scheduling profiles need a profile handler (e.g. disagg-profile-handler)", profiles_.size());
    auto p = make_plugin("single-profile-handler", "single-profile-handler", nullptr, env);
    plugins_.push_back(p);
    handler_ = std::dynamic_pointer_cast<ProfileHandler>(p);
  }
  if (handler_->type() == "single-profile-handler" && profiles_.size() != 1)
    fail("single-profile-handler needs exactly one scheduling profile, the configuration has {}",
         profiles_.size());
  for (const std::string& need : handler_->required_profiles())
    if (std::none_of(profiles_.begin(), profiles_.end(), [&](const auto& p) { return p->name == need; }))
      fail("profile handler '{}' needs a scheduling profile named '{}'", handler_->name(), need);
  if (config.saturation_detector) {
    detector_ = std::dynamic_pointer_cast<SaturationDetector>(lookup(*config.saturation_detector));
    if (!detector_)
      fail("saturationDetector.pluginRef '{}' is not a saturation detector", *config.saturation_detector);
  }
}

Scheduler::~Scheduler() = default;

std::shared_ptr<Plugin> Scheduler::plugin(std::string_view name) const {
  for (const auto& p : plugins_)
    if (p->name() == name) return p;
  return nullptr;
}

void Scheduler::endpoint_removed(EndpointId id) {
  std::lock_guard lock(mu_);
  for (EndpointObserver* o : observers_) o->endpoint_removed(id);
}

Scheduler::Decision Scheduler::schedule(const SchedRequest& req, const EndpointList& endpoints) {
  const SteadyNs now = steady_now_ns();
  thread_local Candidates fit;
  fit.clear();
  for (const auto& e : endpoints)
    if (e->fit(now, cfg_.staleness)) fit.push_back(e.get());
  Decision d;
  if (fit.empty()) return d;
  std::lock_guard lock(mu_);
  if (detector_ && detector_->saturated(fit, now)) {
    d.status = Status::kShed;
    return d;
  }
  prefix_blocks_.clear();
  SchedContext ctx{req, now, rng_, prefix_blocks_};
  Runner runner(*this, fit);
  std::optional<SchedResult> r = handler_->schedule(ctx, runner);
  if (!r) return d;
  d.status = Status::kOk;
  d.result = std::move(*r);
  const Endpoint* target = d.result.primary.ranked.front();
  if (!req.block_keys.empty()) {
    if (const auto held = prefix_blocks_.find(target->id()))
      d.predicted_hit = std::min(1.0, *held / static_cast<double>(req.block_keys.size()));
  }
  const PreRequest::Outcome o{target, d.result.prefill ? d.result.prefill->ranked.front() : nullptr};
  for (PreRequest* p : pre_request_) p->pre_request(ctx, o);
  return d;
}

}  // namespace llmd::router
