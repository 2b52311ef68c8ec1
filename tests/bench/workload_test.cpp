#include "bench/workload.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "common/error.hpp"
#include "model/gguf.hpp"
#include "model/tokenizer.hpp"

namespace llmd::bench {
namespace {

const model::Tokenizer& stories() {
  static const model::Tokenizer tok = model::Tokenizer::from_gguf(
      model::GgufFile::open(std::string(LLMD_SHARED_DIR) + "/models/stories260K.gguf"));
  return tok;
}

std::string temp_file(const std::string& name, const std::string& content) {
  const std::string path = testing::TempDir() + "/llmd_workload_" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

std::vector<BenchRequest> drain(Workload& w) {
  std::vector<BenchRequest> out;
  while (auto r = w.next()) out.push_back(std::move(*r));
  return out;
}

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  return static_cast<size_t>(std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin());
}

std::vector<int32_t> span(const std::vector<int32_t>& v, size_t from, size_t n) {
  return {v.begin() + from, v.begin() + from + n};
}

void expect_ordinary(const BenchRequest& r) {
  const auto& tok = stories();
  for (int32_t id : r.prompt_tokens) {
    EXPECT_FALSE(tok.is_control(id)) << id;
    EXPECT_FALSE(tok.token_text(id).starts_with("<0x")) << id;
  }
  EXPECT_EQ(r.prompt_text, tok.decode(r.prompt_tokens));
}

TEST(RandomWorkload, ExactLengthsWithTokenizer) {
  WorkloadOptions o;
  o.num_requests = 40;
  o.input_len = 50;
  o.output_len = 20;
  o.range_ratio = 0.5;
  auto w = make_workload(o, {&stories(), 1});
  EXPECT_EQ(w->size(), 40u);
  const auto reqs = drain(*w);
  ASSERT_EQ(reqs.size(), 40u);
  EXPECT_TRUE(w->finished());
  bool varied = false;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& r = reqs[i];
    EXPECT_EQ(r.id, i);
    EXPECT_EQ(r.prompt_len, static_cast<int32_t>(r.prompt_tokens.size()));
    EXPECT_GE(r.prompt_len, 25);
    EXPECT_LE(r.prompt_len, 75);
    EXPECT_GE(r.max_tokens, 10);
    EXPECT_LE(r.max_tokens, 30);
    EXPECT_TRUE(r.messages.empty());
    EXPECT_FALSE(r.at_s);
    varied |= r.prompt_len != reqs[0].prompt_len;
    expect_ordinary(r);
  }
  EXPECT_TRUE(varied);

  o.range_ratio = 0;
  for (const auto& r : drain(*make_workload(o, {&stories(), 1}))) {
    EXPECT_EQ(r.prompt_tokens.size(), 50u);
    EXPECT_EQ(r.max_tokens, 20);
  }
}

TEST(RandomWorkload, TextWithoutTokenizer) {
  WorkloadOptions o;
  o.num_requests = 5;
  o.input_len = 30;
  for (const auto& r : drain(*make_workload(o, {nullptr, 3}))) {
    EXPECT_TRUE(r.prompt_tokens.empty());
    EXPECT_EQ(r.prompt_text.size(), 120u);  // 4 characters a token
    EXPECT_EQ(r.prompt_len, 30);
  }
}

TEST(RandomWorkload, DeterministicPerSeed) {
  WorkloadOptions o;
  o.num_requests = 10;
  o.input_len = 20;
  o.range_ratio = 0.3;
  auto a = drain(*make_workload(o, {&stories(), 7}));
  auto b = drain(*make_workload(o, {&stories(), 7}));
  auto c = drain(*make_workload(o, {&stories(), 8}));
  ASSERT_EQ(a.size(), b.size());
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prompt_tokens, b[i].prompt_tokens);
    EXPECT_EQ(a[i].max_tokens, b[i].max_tokens);
    differs |= a[i].prompt_tokens != c[i].prompt_tokens;
  }
  EXPECT_TRUE(differs);
  auto t1 = drain(*make_workload(o, {nullptr, 7}));
  auto t2 = drain(*make_workload(o, {nullptr, 7}));
  auto t3 = drain(*make_workload(o, {nullptr, 8}));
  EXPECT_EQ(t1[0].prompt_text, t2[0].prompt_text);
  EXPECT_NE(t1[0].prompt_text, t3[0].prompt_text);
}

TEST(SharedPrefixWorkload, GroupsShareExactlyThePrefix) {
  WorkloadOptions o;
  o.kind = "shared-prefix";
  o.groups = 3;
  o.prefix_len = 40;
  o.question_len = 10;
  o.questions_per_group = 4;
  o.output_len = 7;
  auto w = make_workload(o, {&stories(), 5});
  EXPECT_EQ(w->size(), 12u);
  const auto reqs = drain(*w);
  ASSERT_EQ(reqs.size(), 12u);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(reqs[i].group, static_cast<int32_t>(i % 3));  // round robin over the groups
    EXPECT_EQ(reqs[i].prompt_tokens.size(), 50u);
    EXPECT_EQ(reqs[i].max_tokens, 7);
    expect_ordinary(reqs[i]);
    for (size_t j = 0; j < i; ++j) {
      const size_t common = common_prefix(reqs[i].prompt_tokens, reqs[j].prompt_tokens);
      if (reqs[i].group == reqs[j].group)
        EXPECT_EQ(common, 40u) << i << " " << j;
      else
        EXPECT_EQ(common, 0u) << i << " " << j;
    }
  }
  o.num_requests = 5;
  EXPECT_EQ(drain(*make_workload(o, {&stories(), 5})).size(), 5u);
}

TEST(SharedPrefixWorkload, TextPrefixWithoutTokenizer) {
  WorkloadOptions o;
  o.kind = "shared-prefix";
  o.groups = 2;
  o.prefix_len = 25;
  o.question_len = 5;
  o.questions_per_group = 2;
  const auto reqs = drain(*make_workload(o, {nullptr, 5}));
  ASSERT_EQ(reqs.size(), 4u);
  EXPECT_EQ(reqs[0].prompt_text.substr(0, 100), reqs[2].prompt_text.substr(0, 100));
  EXPECT_NE(reqs[0].prompt_text, reqs[2].prompt_text);
  EXPECT_NE(reqs[0].prompt_text.substr(0, 100), reqs[1].prompt_text.substr(0, 100));
  EXPECT_EQ(reqs[0].prompt_len, 30);
}

TEST(MultiTurnWorkload, HistoryGrowsWithReplies) {
  WorkloadOptions o;
  o.kind = "multi-turn";
  o.conversations = 2;
  o.turns = 3;
  o.input_len = 12;
  o.output_len = 9;
  const auto& tok = stories();
  auto w = make_workload(o, {&tok, 11});
  EXPECT_EQ(w->size(), 6u);
  auto a0 = w->next();
  auto b0 = w->next();
  ASSERT_TRUE(a0 && b0);
  EXPECT_EQ(a0->conversation, 0);
  EXPECT_EQ(b0->conversation, 1);
  EXPECT_EQ(a0->turn, 0);
  ASSERT_EQ(a0->messages.size(), 1u);
  EXPECT_EQ(a0->messages[0].first, "user");
  EXPECT_EQ(a0->prompt_tokens.size(), 12u);
  EXPECT_EQ(a0->messages[0].second, tok.decode(a0->prompt_tokens));
  EXPECT_EQ(a0->max_tokens, 9);
  // Both conversations wait on their replies.
  EXPECT_FALSE(w->next());
  EXPECT_FALSE(w->finished());

  const std::string reply = "Once upon a time there was a cat.";
  w->on_reply(*b0, reply);
  auto b1 = w->next();
  ASSERT_TRUE(b1);
  EXPECT_FALSE(w->next());
  EXPECT_EQ(b1->conversation, 1);
  EXPECT_EQ(b1->turn, 1);
  ASSERT_EQ(b1->messages.size(), 3u);
  EXPECT_EQ(b1->messages[0], b0->messages[0]);
  EXPECT_EQ(b1->messages[1], (std::pair<std::string, std::string>{"assistant", reply}));
  EXPECT_EQ(b1->messages[2].first, "user");
  EXPECT_NE(b1->messages[2].second, b0->messages[0].second);
  const auto reply_ids = tok.encode(reply, false);
  ASSERT_EQ(b1->prompt_tokens.size(), 12u + reply_ids.size() + 12u);
  EXPECT_EQ(span(b1->prompt_tokens, 0, 12), b0->prompt_tokens);
  EXPECT_EQ(span(b1->prompt_tokens, 12, reply_ids.size()), reply_ids);
  EXPECT_EQ(b1->prompt_len, static_cast<int32_t>(b1->prompt_tokens.size()));
  EXPECT_EQ(b1->prompt_text, tok.decode(b1->prompt_tokens));

  // A stale or repeated reply changes nothing.
  w->on_reply(*b0, "again");
  EXPECT_FALSE(w->next());

  w->on_reply(*a0, "");  // a failed request still lets its conversation go on
  w->on_reply(*b1, "ok");
  std::vector<BenchRequest> rest;
  while (!w->finished()) {
    auto r = w->next();
    ASSERT_TRUE(r);
    w->on_reply(*r, "fine");
    rest.push_back(std::move(*r));
  }
  EXPECT_EQ(rest.size(), 3u);
  EXPECT_FALSE(w->next());
  for (const auto& r : rest) EXPECT_EQ(r.messages.size(), static_cast<size_t>(2 * r.turn + 1));
}

TEST(MultiTurnWorkload, TextHistoryWithoutTokenizer) {
  WorkloadOptions o;
  o.kind = "multi-turn";
  o.conversations = 1;
  o.turns = 2;
  o.input_len = 10;
  auto w = make_workload(o, {nullptr, 1});
  auto r0 = w->next();
  ASSERT_TRUE(r0);
  EXPECT_EQ(r0->prompt_len, 10);
  w->on_reply(*r0, "a reply");
  auto r1 = w->next();
  ASSERT_TRUE(r1);
  EXPECT_TRUE(r1->prompt_text.starts_with(r0->prompt_text + "a reply"));
  EXPECT_GT(r1->prompt_len, 20);
}

TEST(ShareGptWorkload, ParsesAndSkips) {
  const std::string path = temp_file("sharegpt.json", R"([
    {"id": "a", "conversations": [{"from": "human", "value": "Tell me a story."},
                                  {"from": "gpt", "value": "Once upon a time there was a little dog."}]},
    {"id": "b", "conversations": [{"from": "human", "value": "Only a question"}]},
    {"id": "c", "conversations": [{"from": "system", "value": "be nice"},
                                  {"from": "human", "value": "Hi there"},
                                  {"from": "gpt", "value": "Hello!"},
                                  {"from": "human", "value": "more"}]},
    {"id": "d", "conversations": [{"from": "gpt", "value": "no human"}]},
    {"id": "e"},
    42
  ])");
  WorkloadOptions o;
  o.kind = "sharegpt";
  o.file = path;
  const auto& tok = stories();
  auto w = make_workload(o, {&tok, 1});
  EXPECT_EQ(w->skipped(), 4u);
  EXPECT_EQ(w->size(), 2u);
  auto reqs = drain(*w);
  ASSERT_EQ(reqs.size(), 2u);
  std::sort(reqs.begin(), reqs.end(), [](auto& x, auto& y) { return x.prompt_text < y.prompt_text; });
  EXPECT_EQ(reqs[0].prompt_text, "Hi there");
  EXPECT_EQ(reqs[0].max_tokens, static_cast<int32_t>(tok.encode("Hello!", false).size()));
  EXPECT_EQ(reqs[1].prompt_text, "Tell me a story.");
  EXPECT_EQ(reqs[1].prompt_tokens, tok.encode("Tell me a story.", false));
  EXPECT_EQ(reqs[1].prompt_len, static_cast<int32_t>(reqs[1].prompt_tokens.size()));
  EXPECT_EQ(reqs[1].max_tokens,
            static_cast<int32_t>(tok.encode("Once upon a time there was a little dog.", false).size()));

  // Without a tokenizer: chars/4.
  auto t = drain(*make_workload(o, {nullptr, 1}));
  for (const auto& r : t) {
    if (r.prompt_text == "Tell me a story.") {
      EXPECT_EQ(r.prompt_len, 4);
      EXPECT_EQ(r.max_tokens, 10);
    }
  }
  o.num_requests = 1;
  EXPECT_EQ(drain(*make_workload(o, {&tok, 1})).size(), 1u);
}

TEST(ShareGptWorkload, BadFilesNameTheFile) {
  WorkloadOptions o;
  o.kind = "sharegpt";
  o.file = temp_file("bad.json", "[{\"id\": ");
  EXPECT_THAT([&] { make_workload(o, {}); }, testing::ThrowsMessage<Error>(testing::HasSubstr(o.file)));
  o.file = temp_file("obj.json", "{}");
  EXPECT_THAT([&] { make_workload(o, {}); }, testing::ThrowsMessage<Error>(testing::HasSubstr(o.file)));
  o.file = temp_file("none.json", "[{\"id\": 1}]");
  EXPECT_THAT([&] { make_workload(o, {}); }, testing::ThrowsMessage<Error>(testing::HasSubstr("1 skipped")));
  o.file = testing::TempDir() + "/llmd_workload_missing.json";
  EXPECT_THAT([&] { make_workload(o, {}); }, testing::ThrowsMessage<Error>(testing::HasSubstr(o.file)));
}

TEST(TraceWorkload, SharesExactlyTheCommonBlocks) {
  const std::string path = temp_file("trace.jsonl",
                                     "{\"timestamp\": 1000, \"input_length\": 40, \"output_length\": 5, "
                                     "\"hash_ids\": [1, 2, 3]}\n"
                                     "{\"timestamp\": 1500, \"input_length\": 32, \"output_length\": 6, "
                                     "\"hash_ids\": [1, 2]}\n"
                                     "\n"
                                     "{\"timestamp\": 3000, \"input_length\": 20, \"output_length\": 0, "
                                     "\"hash_ids\": [1, 9]}\n"
                                     "{\"timestamp\": 3250, \"input_length\": 48, \"output_length\": 1, "
                                     "\"hash_ids\": [7, 8, 3]}\n");
  WorkloadOptions o;
  o.kind = "trace";
  o.file = path;
  o.trace_block_tokens = 16;
  auto w = make_workload(o, {&stories(), 4});
  EXPECT_EQ(w->size(), 4u);
  const auto r = drain(*w);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_TRUE(w->finished());
  const std::vector<size_t> lens = {40, 32, 20, 48};
  const std::vector<double> at = {0, 0.5, 2.0, 2.25};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(r[i].prompt_tokens.size(), lens[i]);
    EXPECT_EQ(r[i].prompt_len, static_cast<int32_t>(lens[i]));
    ASSERT_TRUE(r[i].at_s);
    EXPECT_DOUBLE_EQ(*r[i].at_s, at[i]);
    expect_ordinary(r[i]);
  }
  EXPECT_EQ(r[0].max_tokens, 5);
  EXPECT_EQ(r[2].max_tokens, 1);
  // Blocks 1, 2: the same in requests 0 and 1; the first 32 tokens and nothing past them.
  EXPECT_EQ(span(r[0].prompt_tokens, 0, 32), r[1].prompt_tokens);
  // Block 1 shared, block 9 not (block 2 of request 0 differs from the cut block 9 of request 2).
  EXPECT_EQ(span(r[2].prompt_tokens, 0, 16), span(r[0].prompt_tokens, 0, 16));
  EXPECT_NE(span(r[2].prompt_tokens, 16, 4), span(r[0].prompt_tokens, 16, 4));
  // Block 3 has the same content at another position; the truncated block 3 of request 0 is its start.
  EXPECT_EQ(span(r[3].prompt_tokens, 32, 8), span(r[0].prompt_tokens, 32, 8));
  EXPECT_NE(span(r[3].prompt_tokens, 0, 16), span(r[0].prompt_tokens, 0, 16));
  EXPECT_NE(span(r[3].prompt_tokens, 16, 16), span(r[0].prompt_tokens, 16, 16));

  // The same seed gives the same prompts, another seed others.
  auto again = drain(*make_workload(o, {&stories(), 4}));
  auto other = drain(*make_workload(o, {&stories(), 5}));
  EXPECT_EQ(again[0].prompt_tokens, r[0].prompt_tokens);
  EXPECT_NE(other[0].prompt_tokens, r[0].prompt_tokens);

  // Mooncake's 512-token blocks by default; text without a tokenizer.
  o.trace_block_tokens = 512;
  o.file =
      temp_file("trace512.jsonl",
                "{\"timestamp\": 0, \"input_length\": 1000, \"output_length\": 3, \"hash_ids\": [0, 1]}\n"
                "{\"timestamp\": 9, \"input_length\": 600, \"output_length\": 3, \"hash_ids\": [0, 2]}\n");
  const auto big = drain(*make_workload(o, {&stories(), 4}));
  ASSERT_EQ(big.size(), 2u);
  EXPECT_EQ(big[0].prompt_tokens.size(), 1000u);
  EXPECT_EQ(common_prefix(big[0].prompt_tokens, big[1].prompt_tokens), 512u);
  const auto text = drain(*make_workload(o, {nullptr, 4}));
  EXPECT_EQ(text[0].prompt_len, 1000);
  EXPECT_EQ(text[0].prompt_text.substr(0, 2048), text[1].prompt_text.substr(0, 2048));
  o.num_requests = 1;
  EXPECT_EQ(drain(*make_workload(o, {nullptr, 4})).size(), 1u);
}

TEST(TraceWorkload, BadLinesNameFileAndLine) {
  const std::string good =
      "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 3, \"hash_ids\": [1]}\n";
  const std::vector<std::string> bad = {
      "not json",
      "[1, 2]",
      "{\"input_length\": 10, \"output_length\": 3, \"hash_ids\": [1]}",
      "{\"timestamp\": -1, \"input_length\": 10, \"output_length\": 3, \"hash_ids\": [1]}",
      "{\"timestamp\": 5, \"input_length\": -10, \"output_length\": 3, \"hash_ids\": [1]}",
      "{\"timestamp\": 5, \"input_length\": 10, \"output_length\": -3, \"hash_ids\": [1]}",
      "{\"timestamp\": 5, \"input_length\": 10, \"output_length\": 3}",
      "{\"timestamp\": 5, \"input_length\": 10, \"output_length\": 3, \"hash_ids\": [\"x\"]}",
      "{\"timestamp\": 5, \"input_length\": 600, \"output_length\": 3, \"hash_ids\": [1]}",
      "{\"timestamp\": 5, \"input_length\": 10, \"output_length\": 3, \"hash_ids\": [1, 2]}",
      "{\"timestamp\": 5, \"input_length\": 10, \"output_length\": 3, \"hash_ids\": []}",
  };
  WorkloadOptions o;
  o.kind = "trace";
  for (size_t i = 0; i < bad.size(); ++i) {
    o.file = temp_file("bad_trace.jsonl", good + bad[i] + "\n" + good);
    EXPECT_THAT([&] { make_workload(o, {}); },
                testing::ThrowsMessage<Error>(testing::HasSubstr(o.file + ":2:")))
        << bad[i];
  }
  o.file = temp_file("empty_trace.jsonl", "\n");
  EXPECT_THAT([&] { make_workload(o, {}); }, testing::ThrowsMessage<Error>(testing::HasSubstr(o.file)));
}

TEST(MakeWorkload, BadOptions) {
  WorkloadOptions o;
  o.kind = "nope";
  EXPECT_THROW(make_workload(o, {}), Error);
  o.kind = "trace";
  EXPECT_THROW(make_workload(o, {}), Error);  // needs a file
  o.kind = "random";
  o.range_ratio = 1.5;
  EXPECT_THAT([&] { make_workload(o, {}); },
              testing::ThrowsMessage<Error>(testing::HasSubstr("range_ratio")));
  o.range_ratio = 0;
  o.input_len = 0;
  EXPECT_THAT([&] { make_workload(o, {}); }, testing::ThrowsMessage<Error>(testing::HasSubstr("input_len")));
}

}  // namespace
}  // namespace llmd::bench
