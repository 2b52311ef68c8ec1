// Profile handlers (single-profile-handler; disagg-profile-handler and its older name
// pd-profile-handler), P/D deciders (prefix-based-pd-decider, always-disagg-pd-decider) and the
// saturation detector (utilization-detector).
#include "common/error.hpp"
#include "router/plugin_registry.hpp"

namespace llmd::router {
namespace {

class SingleProfileHandler final : public ProfileHandler {
 public:
  std::optional<SchedResult> schedule(SchedContext& ctx, ProfileRunner& runner) override {
    auto r = runner.run(runner.profiles().front(), ctx);  // the configuration has exactly one
    if (!r) return std::nullopt;
    return SchedResult{std::move(*r), std::nullopt};
  }
  std::vector<std::string> required_profiles() const override { return {}; }
};

// Decode first (the primary profile: it is where the answer streams from); then, when the
// decider says the uncached part of the prompt is worth it, a prefill endpoint.
class DisaggProfileHandler final : public ProfileHandler, public NeedsLookup {
 public:
  DisaggProfileHandler(std::string decode, std::string prefill, std::string decider)
      : decode_(std::move(decode)), prefill_(std::move(prefill)), decider_name_(std::move(decider)) {}

  void resolve(const PluginLookup& lookup) override {
    if (decider_name_.empty()) return;
    auto p = lookup(decider_name_);
    decider_ = std::dynamic_pointer_cast<PdDecider>(p);
    if (!decider_) fail("plugin '{}': decider '{}' is not a P/D decider plugin", name(), decider_name_);
  }

  std::optional<SchedResult> schedule(SchedContext& ctx, ProfileRunner& runner) override {
    auto decode = runner.run(decode_, ctx);
    if (!decode) return std::nullopt;
    SchedResult r{std::move(*decode), std::nullopt};
    if (decider_ && runner.has(prefill_) && decider_->disaggregate(ctx, *r.primary.ranked.front())) {
      if (auto p = runner.run(prefill_, ctx)) r.prefill = std::move(*p);
    }
    return r;
  }
  std::vector<std::string> required_profiles() const override { return {decode_}; }

 private:
  std::string decode_, prefill_, decider_name_;
  std::shared_ptr<PdDecider> decider_;
};

class PrefixBasedPdDecider final : public PdDecider {
 public:
  explicit PrefixBasedPdDecider(int64_t non_cached) : non_cached_(non_cached) {}
  bool disaggregate(SchedContext& ctx, const Endpoint& decode) override {
    if (non_cached_ <= 0 || ctx.req.prompt_tokens < non_cached_) return false;  // llm-d: 0 disables
    const double hit = ctx.prefix_blocks.find(decode.id()).value_or(0.0) * ctx.req.block_size;
    return static_cast<double>(ctx.req.prompt_tokens) - hit >= static_cast<double>(non_cached_);
  }

 private:
  int64_t non_cached_;
};

class AlwaysDisaggDecider final : public PdDecider {
 public:
  bool disaggregate(SchedContext&, const Endpoint&) override { return true; }
};

// Saturated when every fit endpoint is over its queue or KV threshold (or its metrics are older
// than the staleness bound): then new requests would only queue, so they are refused with 429.
class UtilizationDetector final : public SaturationDetector {
 public:
  UtilizationDetector(double queue, double kv, std::chrono::nanoseconds stale, double headroom)
      : queue_(queue * (1 + headroom)), kv_(kv * (1 + headroom)), stale_(stale) {}
  bool saturated(std::span<Endpoint* const> fit, SteadyNs now) override {
    for (const Endpoint* e : fit) {
      const bool fresh = now - e->scraped_at.load(std::memory_order_relaxed) <= stale_.count();
      if (fresh && e->waiting.load(std::memory_order_relaxed) < queue_ &&
          e->kv_usage.load(std::memory_order_relaxed) < kv_)
        return false;
    }
    return true;
  }

 private:
  double queue_, kv_;
  std::chrono::nanoseconds stale_;
};

}  // namespace

std::shared_ptr<Plugin> make_profile_plugin(std::string_view type, Params& p, const PluginEnv&) {
  if (type == "single-profile-handler") return std::make_shared<SingleProfileHandler>();
  if (type == "disagg-profile-handler" || type == "pd-profile-handler") {
    std::string decode = "decode", prefill = "prefill", decider;
    if (const nlohmann::json* prof = p.object("profiles")) {
      if (prof->contains("decode")) decode = prof->at("decode").get<std::string>();
      if (prof->contains("prefill")) prefill = prof->at("prefill").get<std::string>();
    }
    if (const nlohmann::json* d = p.object("deciders"); d && d->contains("prefill"))
      decider = d->at("prefill").get<std::string>();
    // The flat, older keys.
    decode = p.string("decodeProfile", decode);
    prefill = p.string("prefillProfile", prefill);
    decider = p.string("prefillDeciderPluginName", p.string("deciderPluginName", decider));
    if (type == "pd-profile-handler" && decider.empty()) decider = "prefix-based-pd-decider";
    p.ignore(
        {"prefixPluginType", "prefixPluginName", "primaryPort", "encodeProfile", "encodeDeciderPluginName"});
    return std::make_shared<DisaggProfileHandler>(decode, prefill, decider);
  }
  if (type == "prefix-based-pd-decider")
    return std::make_shared<PrefixBasedPdDecider>(p.integer("nonCachedTokens", 0, 0, int64_t{1} << 40));
  if (type == "always-disagg-pd-decider") return std::make_shared<AlwaysDisaggDecider>();
  if (type == "utilization-detector") {
    const double q = p.number("queueDepthThreshold", 5, 1e-9, 1e12);
    const double kv = p.number("kvCacheUtilThreshold", 0.8, 1e-9, 1.0);
    const auto stale = parse_duration(p.string("metricsStalenessThreshold", "200ms"), "utilization-detector");
    const double headroom = p.number("headroom", 0.0, 0.0, 1e6);
    return std::make_shared<UtilizationDetector>(q, kv, stale, headroom);
  }
  return nullptr;
}

}  // namespace llmd::router
