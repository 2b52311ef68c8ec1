// The router's KV-block index (src/router/kv_index.hpp):
//   BM_LongestPrefix/<shape>: one scheduling lookup, a 4K-token request (256 block keys) against
//     100 candidates, in an index of 1,000 endpoints with ~1M other entries. Shapes:
//       0 spread: the 100 candidates hold prefixes of 100 different lengths (0..253 blocks), some
//         of their tails in CPU: every key has a different holder set, the worst case;
//       1 typical: 3 candidates hold long prefixes (256, 200, 128 blocks), 20 a 16-block system
//         prompt, the rest nothing;
//       2 shared: all 1,000 endpoints hold a 64-block system prompt, 5 candidates more;
//       3 miss: nobody holds the first block.
//   BM_Scale: fills 1,000 endpoints with 10,000,000 (block, endpoint) entries, most blocks on 1-3
//     endpoints plus a system prompt on all of them, and reports memory_bytes() per entry and the
//     process's RSS growth per entry (from /proc/self/statm), the fill rate, and a lookup's time
//     in the full index.
#include <benchmark/benchmark.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "router/kv_index.hpp"

namespace {

using llmd::router::EndpointId;
using llmd::router::KvIndex;
using llmd::router::Medium;

constexpr size_t kRequestKeys = 256;  // 4K tokens in 16-token blocks
constexpr EndpointId kEndpoints = 1000;
constexpr size_t kCandidates = 100;

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::vector<uint64_t> random_keys(uint64_t& seed, size_t n) {
  std::vector<uint64_t> k(n);
  for (auto& x : k) x = splitmix(seed);
  return k;
}

size_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

// Stores chains of `chain` random blocks, each on 1-3 random endpoints (60/25/15%), until
// `entries` (block, endpoint) entries were added.
void fill_background(KvIndex& idx, uint64_t& seed, size_t entries, size_t chain = 32) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<uint64_t> keys(chain);
  size_t added = 0;
  while (added < entries) {
    for (auto& k : keys) k = splitmix(seed);
    const uint32_t r = rng() % 100;
    const int copies = r < 60 ? 1 : r < 85 ? 2 : 3;
    EndpointId eps[3];
    for (int c = 0; c < copies; ++c) {
      do {
        eps[c] = static_cast<EndpointId>(rng() % kEndpoints);
      } while (std::find(eps, eps + c, eps[c]) != eps + c);  // distinct: each adds entries
      idx.stored(eps[c], keys, Medium::kGpu);
      added += keys.size();
    }
  }
}

struct PrefixSetup {
  std::unique_ptr<KvIndex> idx = std::make_unique<KvIndex>();
  std::vector<uint64_t> request;
  std::vector<EndpointId> candidates;
};

PrefixSetup make_prefix_setup(int shape) {
  PrefixSetup s;
  uint64_t seed = 42;
  fill_background(*s.idx, seed, 1'000'000);
  s.request = random_keys(seed, kRequestKeys);
  for (size_t i = 0; i < kCandidates; ++i) s.candidates.push_back(static_cast<EndpointId>(i * 7 + 3));
  std::span<const uint64_t> req(s.request);
  switch (shape) {
    case 0:
      for (size_t i = 0; i < kCandidates; ++i) {
        const size_t len = i * kRequestKeys / kCandidates;
        const size_t gpu = i % 4 == 0 ? len / 2 : len;  // every fourth has its tail in CPU
        s.idx->stored(s.candidates[i], req.first(gpu), Medium::kGpu);
        s.idx->stored(s.candidates[i], req.subspan(gpu, len - gpu), Medium::kCpu);
      }
      break;
    case 1:
      s.idx->stored(s.candidates[10], req, Medium::kGpu);
      s.idx->stored(s.candidates[20], req.first(200), Medium::kGpu);
      s.idx->stored(s.candidates[30], req.first(128), Medium::kCpu);
      for (size_t i = 40; i < 60; ++i) s.idx->stored(s.candidates[i], req.first(16), Medium::kGpu);
      break;
    case 2:
      for (EndpointId e = 0; e < kEndpoints; ++e) s.idx->stored(e, req.first(64), Medium::kGpu);
      for (size_t i = 0; i < 5; ++i)
        s.idx->stored(s.candidates[i * 20], req.first(64 + 30 * i), Medium::kGpu);
      break;
    default:
      break;  // 3: nobody holds the request's blocks
  }
  return s;
}

void BM_LongestPrefix(benchmark::State& state) {
  const PrefixSetup s = make_prefix_setup(static_cast<int>(state.range(0)));
  std::vector<double> out(s.candidates.size());
  for (auto _ : state) {
    s.idx->longest_prefix(s.request, s.candidates, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  double best = 0;
  for (double x : out) best = std::max(best, x);
  state.counters["best_score"] = best;
  state.counters["index_entries"] = static_cast<double>(s.idx->entries());
}
BENCHMARK(BM_LongestPrefix)->ArgName("shape")->DenseRange(0, 3)->Unit(benchmark::kMicrosecond);

void BM_Scale(benchmark::State& state) {
  constexpr size_t kEntries = 10'000'000;
  constexpr size_t kSystemPromptBlocks = 64;  // on every endpoint: 64,000 of the entries
  for (auto _ : state) {
    const size_t rss0 = rss_bytes();
    auto idx = std::make_unique<KvIndex>();
    uint64_t seed = 7;
    const auto system_prompt = random_keys(seed, kSystemPromptBlocks);
    const auto t0 = std::chrono::steady_clock::now();
    for (EndpointId e = 0; e < kEndpoints; ++e) idx->stored(e, system_prompt, Medium::kGpu);
    fill_background(*idx, seed, kEntries - kSystemPromptBlocks * kEndpoints);
    const double fill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const size_t rss1 = rss_bytes();
    const double entries = static_cast<double>(idx->entries());

    // A lookup in the full index: the system prompt, then blocks nobody holds.
    std::vector<uint64_t> request(system_prompt);
    const auto rest = random_keys(seed, kRequestKeys - request.size());
    request.insert(request.end(), rest.begin(), rest.end());
    std::vector<EndpointId> cands;
    for (size_t i = 0; i < kCandidates; ++i) cands.push_back(static_cast<EndpointId>(i * 10));
    std::vector<double> out(cands.size());
    constexpr int kLookups = 2000;
    const auto t1 = std::chrono::steady_clock::now();
    for (int i = 0; i < kLookups; ++i) {
      idx->longest_prefix(request, cands, out);
      benchmark::DoNotOptimize(out.data());
    }
    const double lookup_ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t1).count() / kLookups;

    state.counters["entries"] = entries;
    state.counters["bytes_per_entry"] = static_cast<double>(idx->memory_bytes()) / entries;
    state.counters["rss_bytes_per_entry"] = static_cast<double>(rss1 - rss0) / entries;
    state.counters["index_MiB"] = static_cast<double>(idx->memory_bytes()) / (1 << 20);
    state.counters["rss_growth_MiB"] = static_cast<double>(rss1 - rss0) / (1 << 20);
    state.counters["fill_Mentries_per_s"] = entries / fill_s / 1e6;
    state.counters["lookup_ns"] = lookup_ns;
    state.SetIterationTime(fill_s);
  }
}
BENCHMARK(BM_Scale)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
