// Runs the real `llmd model inspect` binary: output facts, and the one-line error contract at the
// process boundary.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/cli_test_util.hpp"

namespace {

using namespace llmd::cli_test;
const std::string kModel = kStoriesModel;

TEST(ModelInspect, JsonHasKeyFacts) {
  TempDir dir;
  const RunResult r = run_llmd({"model", "inspect", kModel, "--json"}, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["file"]["path"], kModel);
  EXPECT_EQ(j["file"]["gguf_version"], 3);
  EXPECT_EQ(j["file"]["size_bytes"], 1185376);
  EXPECT_EQ(j["file"]["alignment"], 32);
  EXPECT_EQ(j["file"]["tensor_count"], 48);
  EXPECT_EQ(j["file"]["data_offset"], 14176);
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["hparams_source"], "llama_config");
  const auto& h = j["hparams"];
  EXPECT_EQ(h["n_embd"], 64);
  EXPECT_EQ(h["n_layer"], 5);
  EXPECT_EQ(h["n_head"], 8);
  EXPECT_EQ(h["n_head_kv"], 4);
  EXPECT_EQ(h["n_ff"], 172);
  EXPECT_EQ(h["head_dim"], 8);
  EXPECT_EQ(h["n_vocab"], 512);
  EXPECT_EQ(h["rms_eps"], 1e-5);
  EXPECT_EQ(h["rope_base"], 10000.0);
  EXPECT_EQ(h["rope_layout"], "normal");
  const auto& types = j["tensor_types"];
  ASSERT_EQ(types.size(), 1u);
  EXPECT_EQ(types["F32"]["count"], 48);
  // All F32: 4 bytes per parameter, and the tensor bytes fill the data section up to padding.
  const uint64_t params = j["parameters"];
  EXPECT_EQ(types["F32"]["bytes"], params * 4);
  EXPECT_LE(14176 + params * 4, 1185376u);
  const auto& t = j["tokenizer"];
  EXPECT_EQ(t["model"], "llama");
  EXPECT_EQ(t["vocab_size"], 512);
  EXPECT_EQ(t["bos_id"], 1);
  EXPECT_EQ(t["eos_id"], 2);
  EXPECT_EQ(t["unk_id"], 0);
  EXPECT_EQ(t["bos_token"], "<s>");
  EXPECT_EQ(t["eos_token"], "</s>");
  EXPECT_EQ(t["has_chat_template"], false);
  EXPECT_FALSE(j.contains("tensors"));
}

TEST(ModelInspect, JsonTensorsListsEveryTensor) {
  TempDir dir;
  const RunResult r = run_llmd({"model", "inspect", "--json", "--tensors", kModel}, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["tensors"].size(), 48u);
  bool found = false;
  for (const auto& t : j["tensors"]) {
    if (t["name"] != "token_embd.weight") continue;
    found = true;
    EXPECT_EQ(t["type"], "F32");
    EXPECT_EQ(t["dims"], nlohmann::json({64, 512}));
    EXPECT_EQ(t["bytes"], 64 * 512 * 4);
  }
  EXPECT_TRUE(found);
}

TEST(ModelInspect, TextSummary) {
  TempDir dir;
  const RunResult r = run_llmd({"model", "inspect", kModel, "--tensors"}, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  for (const char* want :
       {"architecture", "llama", "n_head_kv", "F32", "tokenizer", "\"<s>\"", "token_embd.weight", "64 x 512"})
    EXPECT_NE(r.out.find(want), std::string::npos) << "missing '" << want << "' in:\n" << r.out;
}

// A minimal GGUF v3 with no tensors and an architecture the engine does not implement.
std::string unsupported_arch_gguf() {
  std::string b;
  auto put = [&](auto v) { b.append(reinterpret_cast<const char*>(&v), sizeof v); };
  auto str = [&](const std::string& s) {
    put(uint64_t{s.size()});
    b += s;
  };
  b += "GGUF";
  put(uint32_t{3});  // version
  put(uint64_t{0});  // tensors
  put(uint64_t{3});  // metadata
  str("general.architecture");
  put(uint32_t{8});  // STRING
  str("qwen9");
  str("qwen9.block_count");
  put(uint32_t{4});  // UINT32
  put(uint32_t{7});
  str("qwen9.rope.freq_base");
  put(uint32_t{6});  // FLOAT32
  put(1e6f);
  b.resize((b.size() + 31) / 32 * 32, '\0');  // the (empty) data section starts aligned
  return b;
}

TEST(ModelInspect, UnsupportedArchitectureShowsRawKeys) {
  TempDir dir;
  const std::string path = (dir.path() / "qwen9.gguf").string();
  const std::string bytes = unsupported_arch_gguf();
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const RunResult r = run_llmd({"model", "inspect", path, "--json"}, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "qwen9");
  EXPECT_EQ(j["hparams_source"], "metadata");
  EXPECT_NE(j["hparams_note"].get<std::string>().find("unsupported architecture"), std::string::npos);
  EXPECT_EQ(j["hparams"]["qwen9.block_count"], 7);
  EXPECT_EQ(j["hparams"]["qwen9.rope.freq_base"], 1e6);
  EXPECT_EQ(j["parameters"], 0);
  EXPECT_EQ(j["tokenizer"]["vocab_size"], nullptr);

  const RunResult text = run_llmd({"model", "inspect", path}, dir);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("qwen9.block_count"), std::string::npos) << text.out;
}

TEST(ModelInspect, MissingFileIsOneErrorLine) {
  TempDir dir;
  const std::string path = (dir.path() / "no-such-model.gguf").string();
  expect_one_error_line(run_llmd({"model", "inspect", path}, dir), path);
}

TEST(ModelInspect, TruncatedFileIsOneErrorLine) {
  TempDir dir;
  const std::string model = slurp(kModel);
  ASSERT_EQ(model.size(), 1185376u);
  // One cut inside the metadata, one inside the tensor data.
  for (size_t cut : {size_t{5000}, model.size() / 2}) {
    const std::string path = (dir.path() / ("truncated-" + std::to_string(cut) + ".gguf")).string();
    std::ofstream(path, std::ios::binary).write(model.data(), static_cast<std::streamsize>(cut));
    expect_one_error_line(run_llmd({"model", "inspect", path, "--json"}, dir), path);
  }
}

}  // namespace
