// One scheduling decision of `llmd route` (issue 5: ≤ 100 µs p99): a 4K-token request (256 block
// keys, hashed from its token ids as the proxy does) among 100 fit endpoints with live metrics.
//   BM_Schedule/0: llm-d's default profile (queue 2, kv-cache-utilization 2, approximate
//     prefix-cache 3, max-score picker), its index learnt from 2,000 earlier decisions;
//   BM_Schedule/1: precise-prefix-cache-scorer over a KV-event index holding 1M other entries on
//     1,000 endpoints, plus queue and kv-cache-utilization;
//   BM_Schedule/2: the P/D profile pair (decode + prefill filters, precise prefix, decider).
// Each iteration is timed alone; p50/p99/max are reported as counters (µs).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "common/block_hash.hpp"
#include "router/config.hpp"
#include "router/kv_index.hpp"
#include "router/scheduler.hpp"

namespace {

using namespace llmd::router;

constexpr int kEndpoints = 100, kTokens = 4096, kBlock = 16;

const char* kPrecise = R"(
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: precise-prefix-cache-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: queue-scorer, weight: 2}
  - {pluginRef: kv-cache-utilization-scorer, weight: 2}
  - {pluginRef: precise-prefix-cache-scorer, weight: 3}
  - {pluginRef: max-score-picker}
)";

const char* kDisagg = R"(
plugins:
- type: prefill-filter
- type: decode-filter
- type: queue-scorer
- type: precise-prefix-cache-scorer
- type: prefix-based-pd-decider
  parameters: {nonCachedTokens: 256}
- type: disagg-profile-handler
  parameters: {deciders: {prefill: prefix-based-pd-decider}}
schedulingProfiles:
- name: prefill
  plugins: [{pluginRef: prefill-filter}, {pluginRef: queue-scorer}, {pluginRef: precise-prefix-cache-scorer}]
- name: decode
  plugins: [{pluginRef: decode-filter}, {pluginRef: queue-scorer}, {pluginRef: precise-prefix-cache-scorer}]
)";

std::vector<int32_t> tokens(std::mt19937_64& rng, std::size_t shared_prefix,
                            const std::vector<int32_t>& prefix) {
  std::vector<int32_t> t(prefix.begin(), prefix.begin() + static_cast<std::ptrdiff_t>(shared_prefix));
  while (t.size() < kTokens) t.push_back(static_cast<int32_t>(rng() % 32000));
  return t;
}

void BM_Schedule(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));
  std::mt19937_64 rng(1);
  EndpointSet set;
  std::string specs;
  for (int i = 0; i < kEndpoints; ++i) {
    specs += "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ":8000";
    if (mode == 2) specs += i % 4 == 0 ? ";role=prefill" : ";role=decode";
    specs += ",";
  }
  set.set(parse_endpoint_list(specs));
  for (const auto& e : *set.snapshot()) {
    e->scraped_at = steady_now_ns() + int64_t{3600} * 1'000'000'000;  // fresh for the whole run
    e->waiting = static_cast<double>(rng() % 8);
    e->kv_usage = static_cast<double>(rng() % 100) / 100.0;
    e->num_gpu_blocks = 20000;
  }
  KvIndex index;
  PluginEnv env;
  env.kv_index = &index;
  SchedulerConfig sc;
  sc.seed = 1;
  Scheduler s(mode == 0 ? default_endpoint_picker_config()
                        : parse_endpoint_picker_config(mode == 1 ? kPrecise : kDisagg),
              env, sc);

  // A system prompt of 1,024 tokens shared by every request; 16 document prefixes of 2,048 more.
  const std::vector<int32_t> base = tokens(rng, 0, {});
  std::vector<std::vector<int32_t>> docs;
  for (int d = 0; d < 16; ++d) {
    std::vector<int32_t> t = tokens(rng, 1024, base);
    docs.push_back(t);
  }
  const llmd::BlockHash root = llmd::root_hash("bench", "");
  std::vector<llmd::BlockHash> hashes;
  auto keys_of = [&](const std::vector<int32_t>& t) {
    llmd::hash_blocks(root, t, kBlock, hashes);
    std::vector<uint64_t> k;
    for (const auto& h : hashes) k.push_back(h.lo);
    return k;
  };
  if (mode == 0) {  // learn from earlier decisions
    for (int i = 0; i < 2000; ++i) {
      SchedRequest r;
      r.block_keys = keys_of(tokens(rng, 1024 + rng() % 2048, docs[rng() % docs.size()]));
      r.prompt_tokens = kTokens;
      s.schedule(r, *set.snapshot());
    }
  } else {  // what KV events would have stored: each document on a few endpoints, 1M other entries
    const auto& eps = *set.snapshot();
    for (std::size_t d = 0; d < docs.size(); ++d) {
      const auto k = keys_of(docs[d]);
      for (int c = 0; c < 3; ++c)
        index.stored(eps[(d * 7 + c) % eps.size()]->id(), std::span(k).first(192), Medium::kGpu);
    }
    std::vector<uint64_t> noise(1000);
    for (int i = 0; i < 1000; ++i) {
      for (auto& x : noise) x = rng();
      index.stored(static_cast<EndpointId>(1000 + i), noise, Medium::kGpu);
    }
  }

  std::vector<std::vector<int32_t>> requests;
  for (int i = 0; i < 64; ++i)
    requests.push_back(tokens(rng, 1024 + rng() % 2048, docs[rng() % docs.size()]));
  std::vector<double> us;
  SchedRequest r;
  r.exact_keys = true;
  r.prompt_tokens = kTokens;
  std::size_t i = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    llmd::hash_blocks(root, requests[i++ % requests.size()], kBlock, hashes);  // the proxy's keying
    r.block_keys.clear();
    for (const auto& h : hashes) r.block_keys.push_back(h.lo);
    const Scheduler::Decision d = s.schedule(r, *set.snapshot());
    benchmark::DoNotOptimize(d.result.primary.ranked.data());
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(us.begin(), us.end());
  state.counters["p50_us"] = us[us.size() / 2];
  state.counters["p99_us"] = us[us.size() * 99 / 100];
  state.counters["max_us"] = us.back();
}
BENCHMARK(BM_Schedule)->Arg(0)->Arg(1)->Arg(2)->Iterations(20000);

}  // namespace

BENCHMARK_MAIN();
