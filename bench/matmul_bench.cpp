// GFLOP/s of the CPU matmul on the shapes of a 160M Llama (n_embd 768, n_ff 3072, vocab 32000) for
// decode (T = 1, 16) and prefill (T = 512). FLOPs = 2 * rows * cols * T; preparing the input is
// timed separately since one prepared input feeds several matrices.
//   matmul_bench --benchmark_filter='Q8_0/768/768/512'
#include <benchmark/benchmark.h>

#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#include "common/float16.hpp"
#include "engine/cpu/matmul.hpp"
#include "engine/cpu/quant.hpp"

namespace {

using llmd::model::GgmlType;
using namespace llmd::engine::cpu;

ThreadPool& pool(int n) {
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  auto& p = pools[n];
  if (!p) p = std::make_unique<ThreadPool>(n);
  return *p;
}

const PackedMatrix& weights(GgmlType type, int64_t rows, int64_t cols) {
  static std::map<std::tuple<GgmlType, int64_t, int64_t>, PackedMatrix> cache;
  auto it = cache.find({type, rows, cols});
  if (it != cache.end()) return it->second;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> row(cols);
  const uint64_t row_bytes = llmd::model::ggml_row_size(type, cols);
  std::vector<uint8_t> raw(rows * row_bytes);
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = nd(rng);
    uint8_t* dst = raw.data() + r * row_bytes;
    if (type == GgmlType::Q8_0) {
      quantize_row_q8_0(row.data(), reinterpret_cast<BlockQ8_0*>(dst), cols);
    } else if (type == GgmlType::Q4_0) {
      quantize_row_q4_0(row.data(), reinterpret_cast<BlockQ4_0*>(dst), cols);
    } else {
      for (int64_t k = 0; k < cols; ++k) reinterpret_cast<uint16_t*>(dst)[k] = llmd::fp32_to_fp16(row[k]);
    }
  }
  return cache
      .emplace(std::make_tuple(type, rows, cols), PackedMatrix::pack(type, raw.data(), rows, cols, pool(2)))
      .first->second;
}

std::vector<float> activations(int64_t n) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = nd(rng);
  return x;
}

// Args: rows, cols, tokens, threads.
void BM_Matmul(benchmark::State& state, GgmlType type) {
  const int64_t rows = state.range(0), cols = state.range(1), T = state.range(2);
  ThreadPool& p = pool(static_cast<int>(state.range(3)));
  const PackedMatrix& w = weights(type, rows, cols);
  const std::vector<float> x = activations(T * cols);
  std::vector<float> y(T * rows);
  MatmulInput in;
  in.prepare(x.data(), T, cols, cols, w.wants_int8(), p);
  for (auto _ : state) {
    matmul(w, in, y.data(), rows, p);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * rows * cols * T * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(isa_name(detect_isa())));
}

void BM_Prepare(benchmark::State& state) {
  const int64_t cols = state.range(0), T = state.range(1);
  ThreadPool& p = pool(static_cast<int>(state.range(2)));
  const std::vector<float> x = activations(T * cols);
  MatmulInput in;
  for (auto _ : state) in.prepare(x.data(), T, cols, cols, true, p);
  state.SetItemsProcessed(state.iterations() * T * cols);
}

// Cost of one parallel_for of trivial tasks: what each of a forward pass's ~10 jobs per layer pays.
void BM_Dispatch(benchmark::State& state) {
  ThreadPool& p = pool(static_cast<int>(state.range(0)));
  std::atomic<int64_t> sink{0};
  for (auto _ : state)
    p.parallel_for(state.range(1), [&](int64_t i, int) { sink.fetch_add(i, std::memory_order_relaxed); });
  benchmark::DoNotOptimize(sink.load());
}
BENCHMARK(BM_Dispatch)->Args({2, 2})->Args({2, 8})->Args({4, 16})->UseRealTime();

void shapes(benchmark::internal::Benchmark* b) {
  for (auto [rows, cols] : {std::pair{768, 768}, {3072, 768}, {768, 3072}, {32000, 768}})
    for (int T : {1, 16, 512})
      for (int threads : {1, 2}) b->Args({rows, cols, T, threads});
  b->ArgNames({"rows", "cols", "T", "thr"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK_CAPTURE(BM_Matmul, Q8_0, GgmlType::Q8_0)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Matmul, F16, GgmlType::F16)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Matmul, Q4_0, GgmlType::Q4_0)->Apply(shapes);
BENCHMARK(BM_Prepare)
    ->Args({768, 1, 1})
    ->Args({768, 512, 1})
    ->Args({768, 512, 2})
    ->Args({3072, 512, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
