// The forward pass against golden data (llama.cpp's greedy outputs for a real trained model) and
// the paged-batching contract: any mix of sequences, on shuffled blocks, computes what each would alone.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "engine/cpu/cpu_backend.hpp"
#include "engine/generator.hpp"
#include "kv/transfer/layout.hpp"
#include "model/gguf.hpp"
#include "model/gguf_writer.hpp"
#include "model/synth.hpp"

namespace llmd::engine {
namespace {

const std::string kModel = std::string(LLMD_SHARED_DIR) + "/models/stories260K.gguf";
const std::string kGolden = std::string(LLMD_SHARED_DIR) + "/models/stories260K.golden.json";

struct GoldenCase {
  std::vector<int32_t> prompt, completion;
};

std::vector<GoldenCase> load_golden() {
  std::ifstream in(kGolden);
  const auto j = nlohmann::json::parse(in);
  std::vector<GoldenCase> out;
  for (const auto& c : j)
    out.push_back(
        {c["prompt_tokens"].get<std::vector<int32_t>>(), c["completion_tokens"].get<std::vector<int32_t>>()});
  return out;
}

class GoldenTest : public ::testing::TestWithParam<std::tuple<KvDtype, int>> {};

TEST_P(GoldenTest, GreedyCompletionMatchesLlamaCpp) {
  const auto [dtype, threads] = GetParam();
  const auto file = model::GgufFile::open(kModel);
  BackendConfig cfg;
  cfg.threads = threads;
  cfg.max_seq_len = 512;
  cfg.kv.dtype = dtype;
  auto backend = cpu::make_cpu_backend(file, cfg);
  Generator gen(*backend);
  GenerateOptions opt;
  opt.sampling.temperature = 0.0f;
  const auto golden = load_golden();
  ASSERT_EQ(golden.size(), 4u);
  for (const auto& g : golden) {
    opt.max_tokens = static_cast<int32_t>(g.completion.size());
    const auto out = gen.generate(g.prompt, opt, {}, [](int32_t id) { return id == 2; });
    EXPECT_EQ(out, g.completion);
  }
}

INSTANTIATE_TEST_SUITE_P(KvTypesAndThreads, GoldenTest,
                         ::testing::Combine(::testing::Values(KvDtype::kF16, KvDtype::kF32),
                                            ::testing::Values(1, 2)));

// Logits of the last token after feeding `tokens` to a fresh sequence, alone.
std::vector<float> alone(Backend& b, std::span<const int32_t> tokens) {
  Generator gen(b);
  const float* l = gen.feed(tokens);
  return {l, l + b.config().n_vocab};
}

void expect_close(std::span<const float> a, std::span<const float> b) {
  ASSERT_EQ(a.size(), b.size());
  float max_abs = 0;
  for (float v : b) max_abs = std::max(max_abs, std::abs(v));
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], 1e-4f * std::max(1.0f, max_abs)) << "logit " << i;
}

// Models for the batching test: the real one (F32, head_dim 8: the generic attention path) and
// synthetic ones through the int8 kernels and the vectorised head_dim-64 attention, with GQA.
struct ModelCase {
  const char* name;
  model::GgmlType dtype;  // F32 with preset "": the real stories260K model
  int n_head, n_head_kv;
};

class TempModel {
 public:
  explicit TempModel(const ModelCase& m) {
    if (std::string(m.name) == "stories260K") {
      path_ = kModel;
      return;
    }
    path_ = (std::filesystem::temp_directory_path() / fmt::format("llmd_test_{}_{}.gguf", m.name, getpid()))
                .string();
    model::SynthOptions o;
    o.preset = {"test", 512, 512, 64 * m.n_head, 2, m.n_head, m.n_head_kv, 256, 1e-5f, 10000.0f};
    o.dtype = m.dtype;
    o.out = path_;
    o.seed = 3;
    model::synthesize_model(o);
    owned_ = true;
  }
  ~TempModel() {
    if (owned_) std::filesystem::remove(path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool owned_ = false;
};

class BatchTest : public ::testing::TestWithParam<ModelCase> {};

TEST_P(BatchTest, MixedSequencesOnShuffledBlocksMatchEachAlone) {
  const TempModel tm(GetParam());
  const auto file = model::GgufFile::open(tm.path());
  BackendConfig cfg;
  cfg.threads = 2;
  cfg.max_seq_len = 256;
  cfg.kv.n_blocks = 64;
  auto backend = cpu::make_cpu_backend(file, cfg);
  const int64_t V = backend->config().n_vocab;
  const int32_t bs = backend->block_size();

  std::mt19937 rng(42);
  auto tokens = [&](int n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = 3 + static_cast<int32_t>(rng() % (V - 3));
    return t;
  };
  const std::vector<int32_t> a = tokens(38), b = tokens(5), c = tokens(21);

  // Blocks handed out in a shuffled order, so no sequence's blocks are contiguous or ascending.
  std::vector<int32_t> ids(cfg.kv.n_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> ta(ids.begin(), ids.begin() + 4), tb(ids.begin() + 4, ids.begin() + 6),
      tc(ids.begin() + 6, ids.begin() + 9);
  ASSERT_GE(static_cast<int32_t>(ta.size()) * bs, 39);

  std::vector<float> logits(3 * V);
  Batch batch;
  // Step 1: A's first 37 tokens and B's whole prompt (logits wanted), C's first chunk (none wanted).
  batch.seqs = {
      {std::span(a).first(37), 0, ta, true}, {b, 0, tb, true}, {std::span(c).first(12), 0, tc, false}};
  ASSERT_TRUE(backend->forward(batch, logits.data()));
  expect_close(std::span(logits).subspan(0, V), alone(*backend, std::span(a).first(37)));
  expect_close(std::span(logits).subspan(V, V), alone(*backend, b));

  // Step 2: decode A's 38th token, C's remaining prefill chunk, and B's next token, in another order.
  const int32_t b_next[] = {7};
  batch.seqs = {{std::span(c).subspan(12), 12, tc, true},
                {std::span(a).subspan(37), 37, ta, true},
                {b_next, 5, tb, true}};
  ASSERT_TRUE(backend->forward(batch, logits.data()));
  std::vector<int32_t> b6 = b;
  b6.push_back(7);
  expect_close(std::span(logits).subspan(0, V), alone(*backend, c));
  expect_close(std::span(logits).subspan(V, V), alone(*backend, a));
  expect_close(std::span(logits).subspan(2 * V, V), alone(*backend, b6));
}

INSTANTIATE_TEST_SUITE_P(Models, BatchTest,
                         ::testing::Values(ModelCase{"stories260K", model::GgmlType::F32, 8, 4},
                                           ModelCase{"q8_0", model::GgmlType::Q8_0, 4, 2},
                                           ModelCase{"q4_0", model::GgmlType::Q4_0, 4, 1},
                                           ModelCase{"f16", model::GgmlType::F16, 2, 2}),
                         [](const auto& info) { return std::string(info.param.name); });

// P/D: a prompt's full blocks computed by one backend and copied, through the arena layout, into
// other block ids of another backend continue there exactly as if that backend had computed them.
TEST_P(BatchTest, BlocksCopiedIntoAnotherBackendContinueAsComputedThere) {
  const TempModel tm(GetParam());
  const auto file = model::GgufFile::open(tm.path());
  BackendConfig cfg;
  cfg.threads = 2;
  cfg.max_seq_len = 256;
  cfg.kv.n_blocks = 16;
  auto prefill = cpu::make_cpu_backend(file, cfg);
  auto decode = cpu::make_cpu_backend(file, cfg);
  const auto src = prefill->kv_region(), dst = decode->kv_region();
  ASSERT_TRUE(src && dst);
  EXPECT_EQ(src->layout, dst->layout);
  EXPECT_EQ(src->layout.n_segments, 2u * prefill->config().n_layer);
  EXPECT_EQ(src->layout.block_bytes(), 2u * prefill->config().n_layer * prefill->block_size() *
                                           prefill->config().n_head_kv * prefill->config().head_dim * 2);

  const int32_t bs = prefill->block_size();
  std::mt19937 rng(7);
  std::vector<int32_t> prompt(2 * bs + 5);
  for (auto& x : prompt) x = 3 + static_cast<int32_t>(rng() % (prefill->config().n_vocab - 3));
  const int64_t V = prefill->config().n_vocab;
  std::vector<float> logits(V);
  Batch batch;
  const std::vector<int32_t> table_p = {4, 9, 2};
  batch.seqs = {{prompt, 0, table_p, true}};
  ASSERT_TRUE(prefill->forward(batch, logits.data()));

  // The decode side holds other blocks (7, 3) for the two full ones and computes only the tail.
  const std::vector<int32_t> table_d = {7, 3, 12};
  for (int i = 0; i < 2; ++i)
    kv::transfer::copy_block(src->layout, src->base, table_p[i], dst->base, table_d[i]);
  std::vector<float> tail(V);
  batch.seqs = {{std::span(prompt).subspan(2 * bs), 2 * bs, table_d, true}};
  ASSERT_TRUE(decode->forward(batch, tail.data()));
  expect_close(tail, logits);
  expect_close(tail, alone(*decode, prompt));
}

// stories260K stores output.weight equal to token_embd.weight: without it (tied output) the
// logits must be the same, bit for bit.
TEST(CpuBackend, TiedOutputUsesTheEmbedding) {
  const auto file = model::GgufFile::open(kModel);
  model::GgufWriter w;
  for (const auto& [key, value] : file.metadata()) w.set(key, value);
  for (const auto& t : file.tensors()) {
    if (t.name == "output.weight") continue;
    const uint8_t* p = file.tensor_data(t);
    w.add_tensor(t.name, t.dims, t.type, std::vector<uint8_t>(p, p + t.n_bytes));
  }
  const std::string tied =
      (std::filesystem::temp_directory_path() / fmt::format("llmd_tied_{}.gguf", getpid())).string();
  w.write(tied);
  const auto tied_file = model::GgufFile::open(tied);
  std::filesystem::remove(tied);

  BackendConfig cfg;
  cfg.threads = 1;
  cfg.max_seq_len = 64;
  auto separate = cpu::make_cpu_backend(file, cfg);
  auto shared = cpu::make_cpu_backend(tied_file, cfg);
  ASSERT_FALSE(separate->config().tied_output);
  ASSERT_TRUE(shared->config().tied_output);
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  EXPECT_EQ(alone(*separate, prompt), alone(*shared, prompt));
}

TEST(CpuBackend, RejectsBadBatchesWithoutCrashing) {
  const auto file = model::GgufFile::open(kModel);
  BackendConfig cfg;
  cfg.threads = 1;
  cfg.max_seq_len = 64;
  cfg.max_batch_tokens = 32;
  auto backend = cpu::make_cpu_backend(file, cfg);
  std::vector<float> logits(backend->config().n_vocab);
  const std::vector<int32_t> table = {0, 1, 2, 3};
  const std::vector<int32_t> toks(40, 5), bad_tok = {1, 100000};
  Batch batch;
  batch.seqs = {{toks, 0, table, true}};
  EXPECT_FALSE(backend->forward(batch, logits.data()));  // more tokens than a step holds
  batch.seqs = {{bad_tok, 0, table, true}};
  EXPECT_FALSE(backend->forward(batch, logits.data()));  // token id out of range
  batch.seqs = {{std::span(toks).first(4), 62, table, true}};
  EXPECT_FALSE(backend->forward(batch, logits.data()));  // past max_seq_len
  const std::vector<int32_t> short_table = {0};
  batch.seqs = {{std::span(toks).first(20), 0, short_table, true}};
  EXPECT_FALSE(backend->forward(batch, logits.data()));  // block table too short
  const std::vector<int32_t> bad_table = {0, 9999};
  batch.seqs = {{std::span(toks).first(20), 0, bad_table, true}};
  EXPECT_FALSE(backend->forward(batch, logits.data()));  // block id out of range
}

}  // namespace
}  // namespace llmd::engine
