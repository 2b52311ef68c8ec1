// The hot path allocates nothing: once a backend is built, forward steps of any shape within its
// limits make no heap allocation on any thread. Global operator new is replaced in this test binary
// to count allocations while a step runs.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "engine/cpu/cpu_backend.hpp"
#include "model/gguf.hpp"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace llmd::engine {
namespace {

TEST(NoAllocation, ForwardStepsAllocateNothing) {
  const auto file = model::GgufFile::open(std::string(LLMD_SHARED_DIR) + "/models/stories260K.gguf");
  BackendConfig cfg;
  cfg.threads = 2;
  cfg.max_seq_len = 128;
  cfg.kv.n_blocks = 16;
  auto backend = cpu::make_cpu_backend(file, cfg);
  std::vector<float> logits(2 * backend->config().n_vocab);
  const std::vector<int32_t> prompt(40, 300), one = {301}, ta = {3, 1, 4}, tb = {9, 2, 6};
  Batch batch;
  batch.seqs.reserve(2);

  g_allocations = 0;
  g_counting = true;
  batch.seqs = {{prompt, 0, ta, true}, {std::span(prompt).first(7), 0, tb, false}};
  const bool ok1 = backend->forward(batch, logits.data()).has_value();
  batch.seqs.clear();
  batch.seqs.push_back({one, 40, ta, true});
  batch.seqs.push_back({one, 7, tb, true});
  const bool ok2 = backend->forward(batch, logits.data()).has_value();
  g_counting = false;
  ASSERT_TRUE(ok1 && ok2);
  EXPECT_EQ(g_allocations.load(), 0);
}

}  // namespace
}  // namespace llmd::engine
