// `llmd generate` as a user runs it: the completion text of llama.cpp's golden runs, sampling
// reproducibility, and one clear error line for bad files and bad arguments.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/cli_test_util.hpp"

namespace {

using namespace llmd::cli_test;

TEST(Generate, PrintsGoldenCompletionText) {
  TempDir dir;
  std::ifstream in(std::string(LLMD_SHARED_DIR) + "/models/stories260K.golden.json");
  const auto golden = nlohmann::json::parse(in);
  for (const auto& g : golden) {
    const RunResult r =
        run_llmd({"generate", "--model", kStoriesModel, "--prompt", g["prompt"], "--max-tokens",
                  std::to_string(g["max_tokens"].get<int>()), "--threads", "2"},
                 dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, g["completion"].get<std::string>());
    EXPECT_TRUE(r.err.empty()) << r.err;
  }
}

TEST(Generate, SameSeedSameTextOtherSeedOtherText) {
  TempDir dir;
  auto run = [&](const char* seed) {
    const RunResult r = run_llmd({"generate", "-m", kStoriesModel, "-p", "Lily", "-n", "40", "--temperature",
                                  "1.0", "--top-p", "0.95", "--seed", seed},
                                 dir);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  const std::string a = run("1"), b = run("1"), c = run("2");
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(Generate, BadFilesGiveOneErrorLine) {
  TempDir dir;
  const std::string missing = (dir.path() / "missing.gguf").string();
  expect_one_error_line(run_llmd({"generate", "-m", missing, "-p", "x"}, dir), missing);

  const std::string model = slurp(kStoriesModel);
  const std::string cut = (dir.path() / "cut.gguf").string();
  std::ofstream(cut, std::ios::binary).write(model.data(), 20000);
  expect_one_error_line(run_llmd({"generate", "-m", cut, "-p", "x"}, dir), cut);

  std::string bad = model;
  bad[10] = 'X';  // tensor count's high byte: the count no longer fits the file
  const std::string corrupt = (dir.path() / "corrupt.gguf").string();
  std::ofstream(corrupt, std::ios::binary).write(bad.data(), static_cast<std::streamsize>(bad.size()));
  expect_one_error_line(run_llmd({"generate", "-m", corrupt, "-p", "x"}, dir), corrupt);
}

TEST(Generate, BadArgumentsFailWithoutOutput) {
  TempDir dir;
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"generate", "-m", kStoriesModel},                                       // no prompt
           {"generate", "-m", kStoriesModel, "-p", "x", "-n", "0"},                 // no tokens to generate
           {"generate", "-m", kStoriesModel, "-p", "x", "--temperature", "-1"},     // bad sampling value
           {"generate", "-m", kStoriesModel, "-p", "x", "--kv-cache-dtype", "q4"},  // unknown cache type
           {"generate", "-m", kStoriesModel, "-p", "x", "--block-size", "12"},      // unsupported block size
       }) {
    const RunResult r = run_llmd(args, dir);
    EXPECT_NE(r.exit_code, 0) << args.back();
    EXPECT_TRUE(r.out.empty()) << r.out;
    EXPECT_FALSE(r.err.empty());
  }
}

TEST(ModelBench, PrintsOneJsonObjectWithSpeeds) {
  TempDir dir;
  const RunResult r = run_llmd({"model", "bench", "-m", kStoriesModel, "--prompt-tokens", "64",
                                "--gen-tokens", "16", "--threads", "1", "-r", "1", "--json"},
                               dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["prefill_tok_s"].get<double>(), 0.0);
  EXPECT_GT(j["decode_tok_s"].get<double>(), 0.0);
  EXPECT_EQ(j["prompt_tokens"], 64);
}

}  // namespace
