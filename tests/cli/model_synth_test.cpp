// `llmd model synth`, through the real binary (LLMD_BINARY) for the command line, and through the
// library for what the file holds.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/error.hpp"
#include "model/gguf.hpp"
#include "model/llama_config.hpp"
#include "model/quantize.hpp"
#include "model/synth.hpp"

namespace llmd {
namespace {

namespace fs = std::filesystem;
using model::GgmlType;
using model::GgufFile;
using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Result {
  int code;
  std::string out;
  std::string err;
};

class ModelSynthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("llmd-synth-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Runs `llmd ARGS`, capturing stdout and stderr.
  Result llmd(const std::string& args) const {
    const std::string out = path("stdout.txt"), err = path("stderr.txt");
    const std::string cmd = std::string(LLMD_BINARY) + " " + args + " >" + out + " 2>" + err;
    const int status = std::system(cmd.c_str());
    auto slurp = [](const std::string& p) {
      std::ifstream f(p);
      return std::string{std::istreambuf_iterator<char>(f), {}};
    };
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
  }

  model::SynthOptions tiny(GgmlType dtype, const std::string& out) const {
    model::SynthOptions o;
    o.preset = *model::find_synth_preset("tiny");
    o.dtype = dtype;
    o.out = path(out);
    return o;
  }

  fs::path dir_;
};

std::string read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

void expect_one_line_error(const Result& r, const std::string& problem) {
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, StartsWith("llmd: error: "));
  EXPECT_THAT(r.err, HasSubstr(problem));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(ModelSynthTest, TinyQ8_0FromTheCommandLine) {
  const Result r = llmd("model synth --preset tiny --dtype q8_0 --seed 7 --out " + path("m.gguf"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("wrote " + path("m.gguf")));

  const GgufFile f = GgufFile::open(path("m.gguf"));
  const auto c = model::LlamaConfig::from_gguf(f);
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.n_embd, 256);
  EXPECT_EQ(c.n_layer, 4);
  EXPECT_EQ(c.n_head, 8);
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.n_ff, 768);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.n_rot, 32);
  EXPECT_EQ(c.n_vocab, 4096);
  EXPECT_FALSE(c.tied_output);
  EXPECT_EQ(f.get_int("general.file_type"), 7);  // LLAMA_FTYPE_MOSTLY_Q8_0
  EXPECT_EQ(f.get_string("general.name"), "llmd-synth-tiny-Q8_0");
  EXPECT_EQ(f.tensors().size(), 2u + 9u * 4u + 1u);
  EXPECT_EQ(f.tensor("token_embd.weight").dims, (std::vector<uint64_t>{256, 4096}));
  EXPECT_EQ(f.tensor("token_embd.weight").type, GgmlType::Q8_0);
  EXPECT_EQ(f.tensor("output.weight").type, GgmlType::Q8_0);
  EXPECT_EQ(f.tensor("blk.3.attn_k.weight").dims, (std::vector<uint64_t>{256, 128}));
  EXPECT_EQ(f.tensor("blk.0.ffn_down.weight").dims, (std::vector<uint64_t>{768, 256}));
  EXPECT_EQ(f.tensor("blk.0.ffn_gate.weight").dims, (std::vector<uint64_t>{256, 768}));
  EXPECT_EQ(f.tensor("blk.2.attn_norm.weight").type, GgmlType::F32);
  EXPECT_EQ(f.tensor("output_norm.weight").dims, (std::vector<uint64_t>{256}));
}

TEST_F(ModelSynthTest, EveryPresetHasItsModelsShapeAndKeys) {
  struct Want {
    const char* name;
    int64_t embd, layers, heads, kv, ff, vocab, ctx;
    float rope_base;
  };
  for (const Want& w : {Want{"tiny", 256, 4, 8, 4, 768, 4096, 2048, 10000.0f},
                        Want{"160m", 768, 12, 12, 12, 3072, 32000, 2048, 10000.0f},
                        Want{"1b", 2048, 22, 32, 4, 5632, 32000, 2048, 10000.0f},
                        Want{"8b", 4096, 32, 32, 8, 14336, 128256, 8192, 500000.0f}}) {
    const model::SynthPreset* p = model::find_synth_preset(w.name);
    ASSERT_NE(p, nullptr) << w.name;
    EXPECT_EQ(p->n_embd, w.embd) << w.name;
    EXPECT_EQ(p->n_layer, w.layers) << w.name;
    EXPECT_EQ(p->n_head, w.heads) << w.name;
    EXPECT_EQ(p->n_head_kv, w.kv) << w.name;
    EXPECT_EQ(p->n_ff, w.ff) << w.name;
    EXPECT_EQ(p->n_vocab, w.vocab) << w.name;
    EXPECT_EQ(p->n_ctx, w.ctx) << w.name;
    EXPECT_EQ(p->rope_base, w.rope_base) << w.name;
  }
  EXPECT_EQ(model::find_synth_preset("70b"), nullptr);
}

TEST_F(ModelSynthTest, MetadataUsesLlamaCppKeys) {
  model::synthesize_model(tiny(GgmlType::F32, "m.gguf"));
  const GgufFile f = GgufFile::open(path("m.gguf"));
  for (const char* key : {"general.architecture",
                          "general.name",
                          "general.file_type",
                          "llama.context_length",
                          "llama.embedding_length",
                          "llama.block_count",
                          "llama.feed_forward_length",
                          "llama.attention.head_count",
                          "llama.attention.head_count_kv",
                          "llama.attention.layer_norm_rms_epsilon",
                          "llama.rope.freq_base",
                          "llama.rope.dimension_count",
                          "llama.vocab_size",
                          "tokenizer.ggml.model",
                          "tokenizer.ggml.tokens",
                          "tokenizer.ggml.scores",
                          "tokenizer.ggml.token_type",
                          "tokenizer.ggml.bos_token_id",
                          "tokenizer.ggml.eos_token_id",
                          "tokenizer.ggml.unknown_token_id"})
    EXPECT_NE(f.find(key), nullptr) << key;
  EXPECT_EQ(f.find("llama.attention.layer_norm_rms_epsilon")->type, model::GgufType::FLOAT32);
  EXPECT_EQ(f.find("llama.block_count")->type, model::GgufType::UINT32);
  EXPECT_EQ(f.get_int("general.file_type"), 0);
  EXPECT_EQ(f.get_float("llama.rope.freq_base"), 10000.0);
  EXPECT_EQ(f.tensor("token_embd.weight").type, GgmlType::F32);
}

TEST_F(ModelSynthTest, SelfMadeVocabIsSentencePieceShaped) {
  const model::SynthVocab v = model::make_synth_vocab(128256);
  ASSERT_EQ(v.tokens.size(), 128256u);
  ASSERT_EQ(v.scores.size(), v.tokens.size());
  ASSERT_EQ(v.types.size(), v.tokens.size());
  EXPECT_EQ(v.tokens[0], "<unk>");
  EXPECT_EQ(v.types[0], 2);
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.tokens[2], "</s>");
  EXPECT_EQ(v.types[1], 3);
  EXPECT_EQ(v.tokens[3], "<0x00>");
  EXPECT_EQ(v.tokens[3 + 0x41], "<0x41>");
  EXPECT_EQ(v.tokens[258], "<0xFF>");
  for (int i = 3; i < 259; ++i) EXPECT_EQ(v.types[i], 6) << i;
  EXPECT_EQ(v.tokens[259], "\xe2\x96\x81");
  for (size_t i = 259; i < v.tokens.size(); ++i) {
    ASSERT_EQ(v.types[i], 1) << i;
    if (i > 259) {  // by rank, as SentencePiece scores
      ASSERT_LT(v.scores[i], v.scores[i - 1]) << i;
    }
  }
  const std::set<std::string> unique(v.tokens.begin(), v.tokens.end());
  EXPECT_EQ(unique.size(), v.tokens.size());
  EXPECT_TRUE(unique.count("\xe2\x96\x81the"));
  EXPECT_THROW(model::make_synth_vocab(259), Error);
}

TEST_F(ModelSynthTest, SameSeedSameFileForAnyThreadCount) {
  auto o = tiny(GgmlType::Q4_0, "a.gguf");
  o.seed = 3;
  o.threads = 1;
  model::synthesize_model(o);
  o.out = path("b.gguf");
  o.threads = 3;
  model::synthesize_model(o);
  EXPECT_EQ(read_all(path("a.gguf")), read_all(path("b.gguf")));
  o.out = path("c.gguf");
  o.seed = 4;
  model::synthesize_model(o);
  EXPECT_NE(read_all(path("a.gguf")), read_all(path("c.gguf")));
}

TEST_F(ModelSynthTest, WeightsHaveTheIntendedScale) {
  model::synthesize_model(tiny(GgmlType::F16, "m.gguf"));
  const GgufFile f = GgufFile::open(path("m.gguf"));
  auto stats = [&](const char* name) {
    const auto& t = f.tensor(name);
    std::vector<float> x(t.n_elements);
    model::dequantize(t.type, {f.tensor_data(t), t.n_bytes}, x);
    double sum = 0, sq = 0;
    for (float v : x) {
      EXPECT_TRUE(std::isfinite(v));
      sum += v;
      sq += double{v} * v;
    }
    const double mean = sum / static_cast<double>(x.size());
    return std::pair{mean, std::sqrt(sq / static_cast<double>(x.size()) - mean * mean)};
  };
  const auto [wm, ws] = stats("blk.1.attn_q.weight");
  EXPECT_NEAR(wm, 0.0, 1e-3);
  EXPECT_NEAR(ws, 0.02, 1e-3);
  const auto [nm, ns] = stats("blk.1.ffn_norm.weight");
  EXPECT_NEAR(nm, 1.0, 0.01);
  EXPECT_LT(ns, 0.05);
  EXPECT_EQ(f.tensor("blk.1.ffn_norm.weight").type, GgmlType::F32);
  EXPECT_EQ(f.get_int("general.file_type"), 1);  // LLAMA_FTYPE_MOSTLY_F16
}

TEST_F(ModelSynthTest, TokenizerFromAnotherGgufSetsTheVocab) {
  const std::string stories = LLMD_SHARED_DIR "/models/stories260K.gguf";
  const Result r =
      llmd("model synth --preset tiny --dtype q4_0 --tokenizer-from " + stories + " --out " + path("m.gguf"));
  ASSERT_EQ(r.code, 0) << r.err;
  const GgufFile src = GgufFile::open(stories);
  const GgufFile f = GgufFile::open(path("m.gguf"));
  EXPECT_EQ(model::LlamaConfig::from_gguf(f).n_vocab, 512);
  EXPECT_EQ(f.tensor("output.weight").dims, (std::vector<uint64_t>{256, 512}));
  EXPECT_EQ(f.get_int("llama.vocab_size"), 512);
  EXPECT_EQ(f.get_int("general.file_type"), 2);  // LLAMA_FTYPE_MOSTLY_Q4_0
  size_t copied = 0;
  for (const auto& [key, value] : src.metadata()) {
    if (!key.starts_with("tokenizer.")) continue;
    ++copied;
    ASSERT_NE(f.find(key), nullptr) << key;
    EXPECT_EQ(f.find(key)->type, value.type) << key;
  }
  EXPECT_GE(copied, 3u);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens"), src.get_string_array("tokenizer.ggml.tokens"));
  EXPECT_EQ(f.get_float_array("tokenizer.ggml.scores"), src.get_float_array("tokenizer.ggml.scores"));
}

TEST_F(ModelSynthTest, BadArgumentsGiveOneClearLine) {
  const std::string out = " --out " + path("m.gguf");
  expect_one_line_error(llmd("model synth --preset huge" + out), "unknown preset 'huge'");
  expect_one_line_error(llmd("model synth --preset tiny --dtype q5_k" + out), "unknown dtype 'q5_k'");
  expect_one_line_error(llmd("model synth --preset tiny --out " + path("no/such/dir/m.gguf")),
                        "cannot create");
  expect_one_line_error(llmd("model synth --preset tiny --tokenizer-from " + path("absent.gguf") + out),
                        path("absent.gguf"));
  // A file that is not a GGUF is named too.
  std::ofstream(path("junk.gguf")) << "not a gguf";
  expect_one_line_error(llmd("model synth --preset tiny --tokenizer-from " + path("junk.gguf") + out),
                        "bad magic");
  EXPECT_FALSE(fs::exists(path("m.gguf")));
  EXPECT_NE(llmd("model synth --preset tiny").code, 0);  // --out is required
}

}  // namespace
}  // namespace llmd
