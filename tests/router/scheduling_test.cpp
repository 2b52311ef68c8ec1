// The scheduling framework with llm-d's plugins: config parsing (errors name the field), each
// scorer's formula, filters, pickers, prefix learning, saturation and the P/D decider.
#include <gtest/gtest.h>

#include <array>
#include <map>
#include <thread>

#include "common/base64.hpp"
#include "common/error.hpp"
#include "router/config.hpp"
#include "router/kv_index.hpp"
#include "router/scheduler.hpp"

namespace llmd::router {
namespace {

// Endpoints with fresh metrics, as the scraper would leave them.
struct Fleet {
  EndpointSet set;
  explicit Fleet(const std::string& specs) {
    set.set(parse_endpoint_list(specs));
    for (const auto& e : *set.snapshot()) e->scraped_at = steady_now_ns();
  }
  Endpoint& at(std::size_t i) { return *(*set.snapshot())[i]; }
  std::shared_ptr<const EndpointList> list() const { return set.snapshot(); }
};

SchedRequest request(std::vector<uint64_t> keys, int64_t tokens = 0) {
  SchedRequest r;
  r.block_keys = std::move(keys);
  r.exact_keys = true;
  r.prompt_tokens = tokens ? tokens : static_cast<int64_t>(r.block_keys.size()) * 16;
  return r;
}

Scheduler make(const std::string& yaml, KvIndex* index = nullptr) {
  PluginEnv env;
  env.kv_index = index;
  SchedulerConfig sc;
  sc.seed = 7;
  return Scheduler(parse_endpoint_picker_config(yaml), env, sc);
}

std::string one_scorer(const std::string& type, const std::string& params = "") {
  return "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: " + type +
         (params.empty() ? "" : "\n  parameters: " + params) +
         "\n- type: max-score-picker\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: " +
         type + "\n  - pluginRef: max-score-picker\n";
}

std::string target(Scheduler& s, const Fleet& f, const SchedRequest& r = request({})) {
  const Scheduler::Decision d = s.schedule(r, *f.list());
  EXPECT_EQ(d.status, Scheduler::Status::kOk);
  return d.status == Scheduler::Status::kOk ? d.result.primary.ranked.front()->address() : "";
}

TEST(EndpointSpec, ParsesAddressesAndLabels) {
  const auto v = parse_endpoint_list("10.0.0.1:8000;role=prefill;zone=a, [::1]:9000\n# comment\nhost:1");
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].labels.at("llm-d.ai/role"), "prefill");
  EXPECT_EQ(v[0].labels.at("zone"), "a");
  EXPECT_EQ(v[1].address(), "[::1]:9000");
  EXPECT_EQ(v[2].port, 1);
  for (const char* bad : {"nohost", "h:0", "h:70000", "h:80;novalue", ":80"})
    EXPECT_THROW(parse_endpoint_spec(bad), Error) << bad;
}

TEST(EndpointSet, KeepsObjectsOfUnchangedSpecsAndTellsObservers) {
  EndpointSet s;
  std::vector<std::string> added, removed;
  s.observe({[&](const auto& e) { added.push_back(e->address()); },
             [&](const auto& e) { removed.push_back(e->address()); }});
  s.set(parse_endpoint_list("a:1,b:2"));
  const auto a = (*s.snapshot())[0];
  s.set(parse_endpoint_list("a:1,c:3"));
  EXPECT_EQ((*s.snapshot())[0], a);  // same object, same live state
  EXPECT_EQ(added, (std::vector<std::string>{"a:1", "b:2", "c:3"}));
  EXPECT_EQ(removed, (std::vector<std::string>{"b:2"}));
}

TEST(Config, DefaultIsLlmdsDefaultProfile) {
  const EndpointPickerConfig c = default_endpoint_picker_config();
  ASSERT_EQ(c.profiles.size(), 1u);
  std::map<std::string, double> w;
  for (const auto& r : c.profiles[0].plugins) w[r.plugin] = r.weight.value_or(1);
  EXPECT_EQ(w["queue-scorer"], 2);
  EXPECT_EQ(w["kv-cache-utilization-scorer"], 2);
  EXPECT_EQ(w["prefix-cache-scorer"], 3);
  Scheduler s(c, PluginEnv{}, {});
  EXPECT_NE(s.plugin("max-score-picker"), nullptr);
}

TEST(Config, ErrorsNameTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"plugins:\n- name: x\n", "plugins[0].type: required"},
      {"plugins:\n- type: queue-scorer\n  weight: 2\n", "plugins[0].weight: unknown field"},
      {"pluginz: []\n", "EndpointPickerConfig.pluginz: unknown field"},
      {"apiVersion: v9\n", "apiVersion: 'v9'"},
      {"plugins:\n- type: queue-scorer\n- type: queue-scorer\n",
       "plugins[1].name: 'queue-scorer' is used twice"},
      {"schedulingProfiles:\n- name: d\n  plugins:\n  - pluginRef: x\n    weight: -1\n",
       "schedulingProfiles[0].plugins[0].weight"},
      {"schedulingProfiles:\n- plugins: []\n", "schedulingProfiles[0].name: required"},
      {"plugins: [\n", "not YAML"},
  };
  for (const auto& [yaml, want] : cases) {
    try {
      parse_endpoint_picker_config(yaml);
      ADD_FAILURE() << "accepted: " << yaml;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what() << "\nwanted: " << want;
    }
  }
  // Plugin-level errors come when the scheduler builds the plugins.
  const std::vector<std::pair<std::string, std::string>> build = {
      {one_scorer("load-aware-scorer", "{thresold: 3}"), "unknown parameter 'thresold'"},
      {one_scorer("active-request-scorer", "{maxBusyScore: 2}"), "maxBusyScore must be in [0, 1]"},
      {one_scorer("nonexistent-scorer"), "unknown type 'nonexistent-scorer'"},
      {"schedulingProfiles:\n- name: d\n  plugins:\n  - pluginRef: ghost\n",
       "pluginRef 'ghost' names no plugin"},
      {"plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: a\n- name: b\n",
       "need a profile handler"},
      {"plugins:\n- type: disagg-profile-handler\nschedulingProfiles:\n- name: x\n", "named 'decode'"},
      {"plugins:\n- type: precise-prefix-cache-scorer\n", "needs the router's KV event index"},
  };
  for (const auto& [yaml, want] : build) {
    try {
      make(yaml);
      ADD_FAILURE() << "accepted: " << yaml;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what() << "\nwanted: " << want;
    }
  }
}

TEST(Scorers, QueueScorerPrefersTheShortestQueue) {
  Fleet f("a:1,b:2,c:3");
  f.at(0).waiting = 10, f.at(1).waiting = 2, f.at(2).waiting = 6;
  Scheduler s = make(one_scorer("queue-scorer"));
  EXPECT_EQ(target(s, f), "b:2");
}

TEST(Scorers, KvUtilizationAndLoadAwareAndActiveRequests) {
  Fleet f("a:1,b:2");
  f.at(0).kv_usage = 0.9, f.at(1).kv_usage = 0.2;
  Scheduler kv = make(one_scorer("kv-cache-utilization-scorer"));
  EXPECT_EQ(target(kv, f), "b:2");
  f.at(0).waiting = 0, f.at(1).waiting = 3;
  Scheduler la = make(one_scorer("load-aware-scorer", "{threshold: 4}"));
  EXPECT_EQ(target(la, f), "a:1");
  f.at(0).active = 5, f.at(1).active = 1;
  Scheduler ar = make(one_scorer("active-request-scorer"));
  EXPECT_EQ(target(ar, f), "b:2");
}

TEST(Filters, RolesAndLabelSelector) {
  Fleet f("p:1;role=prefill,d:2;role=decode,plain:3,both:4;role=prefill-decode;zone=x");
  const std::string decode = "plugins:\n- type: decode-filter\n";
  Scheduler s = make(decode);
  for (int i = 0; i < 20; ++i) EXPECT_NE(target(s, f), "p:1");
  Scheduler pf = make("plugins:\n- type: prefill-filter\n");
  for (int i = 0; i < 20; ++i) {
    const std::string t = target(pf, f);
    EXPECT_TRUE(t == "p:1" || t == "both:4") << t;
  }
  Scheduler ls = make("plugins:\n- type: label-selector-filter\n  parameters:\n    matchLabels: {zone: x}\n");
  EXPECT_EQ(target(ls, f), "both:4");
  Scheduler ex = make(
      "plugins:\n- type: label-selector-filter\n  parameters:\n    matchExpressions:\n    - {key: "
      "llm-d.ai/role, operator: "
      "In, values: [decode]}\n");
  EXPECT_EQ(target(ex, f), "d:2");
}

TEST(Pickers, MaxScoreBreaksTiesAtRandomAndRanksEveryone) {
  Fleet f("a:1,b:2,c:3,d:4");
  Scheduler s = make(one_scorer("queue-scorer"));  // all equal queues: every score 1
  std::map<std::string, int> seen;
  for (int i = 0; i < 400; ++i) ++seen[target(s, f)];
  EXPECT_EQ(seen.size(), 4u);
  for (const auto& [k, n] : seen) EXPECT_GT(n, 50) << k;
  const auto d = s.schedule(request({}), *f.list());
  EXPECT_EQ(d.result.primary.ranked.size(), 4u);  // fallbacks for the proxy
}

TEST(Pickers, WeightedRandomFollowsScores) {
  Fleet f("a:1,b:2");
  f.at(0).kv_usage = 0.75, f.at(1).kv_usage = 0.25;  // scores 0.25 and 0.75
  Scheduler s = make(
      "plugins:\n- type: kv-cache-utilization-scorer\n- type: weighted-random-picker\nschedulingProfiles:\n- "
      "name: d\n  "
      "plugins:\n  - pluginRef: kv-cache-utilization-scorer\n  - pluginRef: weighted-random-picker\n");
  int b = 0;
  constexpr int kN = 4000;
  for (int i = 0; i < kN; ++i) b += target(s, f) == "b:2";
  // A-Res with weights 0.25 : 0.75 picks b with probability 0.75.
  EXPECT_NEAR(b / double(kN), 0.75, 0.04);
}

TEST(PrefixScorers, ApproximateLearnsFromItsOwnDecisions) {
  Fleet f("a:1,b:2,c:3");
  Scheduler s = make(one_scorer("prefix-cache-scorer"));
  const SchedRequest r1 = request({11, 12, 13, 14});
  const std::string first = target(s, f, r1);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(target(s, f, request({11, 12, 13, 99})), first);  // shares 3 of 4
  const auto d = s.schedule(request({11, 12, 13, 14}), *f.list());
  EXPECT_DOUBLE_EQ(d.predicted_hit, 1.0);
}

TEST(PrefixScorers, ApproximateLruIsBoundedByTheEndpointsCache) {
  Fleet f("a:1");
  f.at(0).num_gpu_blocks = 4;
  Scheduler s = make(one_scorer("prefix-cache-scorer"));
  target(s, f, request({1, 2, 3, 4}));
  target(s, f, request({5, 6, 7, 8}));  // evicts 1..4
  // (Each schedule() learns its own blocks too, so the hit is read first.)
  EXPECT_DOUBLE_EQ(s.schedule(request({5, 6, 7, 8}), *f.list()).predicted_hit, 1.0);
  EXPECT_DOUBLE_EQ(s.schedule(request({1, 2}), *f.list()).predicted_hit, 0.0);
}

TEST(PrefixScorers, ApproximateForgetsAnEndpointThatLeft) {
  Fleet f("a:1");
  Scheduler s = make(one_scorer("prefix-cache-scorer"));
  target(s, f, request({21, 22, 23}));
  EXPECT_DOUBLE_EQ(s.schedule(request({21, 22, 23}), *f.list()).predicted_hit, 1.0);
  s.endpoint_removed(f.at(0).id());
  EXPECT_DOUBLE_EQ(s.schedule(request({21, 22, 23}), *f.list()).predicted_hit, 0.0);
}

TEST(PrefixScorers, PreciseReadsTheKvEventIndex) {
  Fleet f("a:1,b:2,c:3");
  KvIndex index;
  index.stored(f.at(2).id(), std::vector<uint64_t>{7, 8, 9}, Medium::kGpu);
  index.stored(f.at(1).id(), std::vector<uint64_t>{7}, Medium::kGpu);
  Scheduler s = make(one_scorer("precise-prefix-cache-scorer"), &index);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(target(s, f, request({7, 8, 9, 10})), "c:3");
  EXPECT_DOUBLE_EQ(s.schedule(request({7, 8, 9, 10}), *f.list()).predicted_hit, 0.75);
}

TEST(PrefixScorers, PreciseSpeculatesOnItsDecisionsUntilTheTtl) {
  Fleet f("a:1,b:2,c:3");
  KvIndex index;  // no KV events arrive in this test
  Scheduler s = make(
      one_scorer("precise-prefix-cache-scorer", "{speculativeIndexing: true, speculativeTTL: 50ms}"), &index);
  const std::string first = target(s, f, request({41, 42, 43}));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(target(s, f, request({41, 42, 43})), first);
  EXPECT_DOUBLE_EQ(s.schedule(request({41, 42, 43}), *f.list()).predicted_hit, 1.0);
  EXPECT_EQ(index.entries(), 0u);  // speculation stays out of the KV-event index
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  // Every decision above has expired: the prefix is no longer assumed cached anywhere.
  EXPECT_DOUBLE_EQ(s.schedule(request({41, 42, 43}), *f.list()).predicted_hit, 0.0);
  Scheduler plain = make(one_scorer("precise-prefix-cache-scorer"), &index);
  target(plain, f, request({41, 42, 43}));
  EXPECT_DOUBLE_EQ(plain.schedule(request({41, 42, 43}), *f.list()).predicted_hit, 0.0);  // off by default
}

TEST(Scorers, SessionAffinityFollowsTheToken) {
  Fleet f("a:1,b:2,c:3");
  Scheduler s = make(one_scorer("session-affinity-scorer"));
  SchedRequest r = request({});
  r.session_token = base64_encode("b:2");
  for (int i = 0; i < 10; ++i) EXPECT_EQ(target(s, f, r), "b:2");
}

TEST(Scorers, NoHitLruSpreadsColdRequests) {
  Fleet f("a:1,b:2,c:3");
  Scheduler s = make(
      "plugins:\n- type: prefix-cache-scorer\n- type: no-hit-lru-scorer\nschedulingProfiles:\n- name: d\n  "
      "plugins:\n  - "
      "pluginRef: no-hit-lru-scorer\n  - pluginRef: prefix-cache-scorer\n");
  std::map<std::string, int> seen;
  for (uint64_t i = 0; i < 3; ++i) ++seen[target(s, f, request({100 + i}))];  // three cold requests
  EXPECT_EQ(seen.size(), 3u);                                                 // each to a different endpoint
}

TEST(Saturation, ShedsOnlyWhenEveryEndpointIsOverAThreshold) {
  Fleet f("a:1,b:2");
  Scheduler s = make(
      "plugins:\n- type: queue-scorer\n- type: utilization-detector\n  parameters: {queueDepthThreshold: 5, "
      "kvCacheUtilThreshold: 0.8, metricsStalenessThreshold: 2s}\nsaturationDetector:\n  pluginRef: "
      "utilization-detector\n");
  f.at(0).waiting = 9, f.at(1).kv_usage = 0.5;
  EXPECT_EQ(s.schedule(request({}), *f.list()).status, Scheduler::Status::kOk);
  f.at(1).kv_usage = 0.95;
  EXPECT_EQ(s.schedule(request({}), *f.list()).status, Scheduler::Status::kShed);
}

TEST(Fitness, StaleOrUnreachableEndpointsAreNotPicked) {
  Fleet f("a:1,b:2");
  Scheduler s = make(one_scorer("queue-scorer"));
  f.at(0).scraped_at = steady_now_ns() - int64_t{3'000'000'000};  // 3 s old
  for (int i = 0; i < 10; ++i) EXPECT_EQ(target(s, f), "b:2");
  f.at(1).reachable = false;
  EXPECT_EQ(s.schedule(request({}), *f.list()).status, Scheduler::Status::kNoEndpoint);
}

TEST(Disagg, PrefixBasedDeciderSplitsLongUncachedPrompts) {
  Fleet f("p:1;role=prefill,d:2;role=decode");
  const std::string yaml = R"(
plugins:
- type: prefill-filter
- type: decode-filter
- type: prefix-cache-scorer
- type: prefix-based-pd-decider
  parameters: {nonCachedTokens: 64}
- type: disagg-profile-handler
  parameters:
    deciders: {prefill: prefix-based-pd-decider}
schedulingProfiles:
- name: prefill
  plugins: [{pluginRef: prefill-filter}, {pluginRef: prefix-cache-scorer}]
- name: decode
  plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer}]
)";
  Scheduler s = make(yaml);
  const auto shortr = s.schedule(request({1, 2}), *f.list());  // 32 tokens: aggregated
  ASSERT_EQ(shortr.status, Scheduler::Status::kOk);
  EXPECT_EQ(shortr.result.primary.ranked.front()->address(), "d:2");
  EXPECT_FALSE(shortr.result.prefill);
  const auto longr = s.schedule(request({5, 6, 7, 8, 9, 10}), *f.list());  // 96 uncached tokens
  ASSERT_TRUE(longr.result.prefill);
  EXPECT_EQ(longr.result.prefill->ranked.front()->address(), "p:1");
  EXPECT_EQ(longr.result.primary.profile, "decode");
  // The same prompt again: the decode endpoint learnt it, so nothing is left to prefill remotely.
  EXPECT_FALSE(s.schedule(request({5, 6, 7, 8, 9, 10}), *f.list()).result.prefill);
}

}  // namespace
}  // namespace llmd::router

namespace llmd::router {
namespace {

// A later prefix scorer of the pass replaces what an earlier one said of the same endpoints, and
// adds the ones it alone scored; clear() starts the next pass empty.
TEST(PrefixBlocks, LaterScorersOverwriteAndClearStartsAfresh) {
  Fleet f("127.0.0.1:1,127.0.0.1:2,127.0.0.1:3");
  Endpoint* a = &f.at(0);
  Endpoint* b = &f.at(1);
  Endpoint* c = &f.at(2);
  PrefixBlocks held;
  EXPECT_FALSE(held.any_held());
  const std::array<Endpoint*, 2> first{a, b};
  held.record(first, std::array<double, 2>{0, 4});
  EXPECT_TRUE(held.any_held());
  const std::array<Endpoint*, 2> second{b, c};
  held.record(second, std::array<double, 2>{0, 2});
  EXPECT_EQ(held.find(a->id()), 0.0);
  EXPECT_EQ(held.find(b->id()), 0.0);  // overwritten, not a second entry
  EXPECT_EQ(held.find(c->id()), 2.0);
  held.record(second, std::array<double, 2>{0, 0});
  EXPECT_FALSE(held.any_held());  // b's old 4 blocks do not linger
  held.clear();
  EXPECT_EQ(held.find(a->id()), std::nullopt);
}

}  // namespace
}  // namespace llmd::router
