// PromptKeyer: what the router reads of a request body, and the 400s it gives for bad ones.
#include "router/request.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace llmd::router {
namespace {

PromptKeyer keyer() {
  PromptKeyer k;
  k.fingerprint = "test-model";
  k.block_size = 4;
  return k;
}

TEST(PromptKeyer, TokenIdsAreKeyedExactlyAsTheServersKeyThem) {
  std::vector<int32_t> ids(10);
  std::iota(ids.begin(), ids.end(), 100);
  std::string body = R"({"model":"m1","cache_salt":"tenant-a","prompt":[)";
  for (std::size_t i = 0; i < ids.size(); ++i) body += (i ? "," : "") + std::to_string(ids[i]);
  body += "]}";
  SchedRequest sr;
  keyer().key(body, false, sr);

  std::vector<BlockHash> want;
  hash_blocks(root_hash("test-model", "tenant-a"), ids, 4, want);
  ASSERT_EQ(want.size(), 2u);  // two full blocks of four; the last two tokens are no block
  ASSERT_EQ(sr.block_keys.size(), 2u);
  EXPECT_EQ(sr.block_keys[0], want[0].lo);
  EXPECT_EQ(sr.block_keys[1], want[1].lo);
  EXPECT_TRUE(sr.exact_keys);
  EXPECT_EQ(sr.prompt_tokens, 10);
  EXPECT_EQ(sr.model, "m1");
}

TEST(PromptKeyer, TextWithoutATokenizerIsFourCharactersPerToken) {
  SchedRequest a, b, c;
  keyer().key(R"({"prompt":"0123456789abcdef0123456789abcdef-tail"})", false, a);
  keyer().key(R"({"prompt":"0123456789abcdef0123456789abcdefXtail"})", false, b);
  keyer().key(R"({"prompt":"0123456789abcdef0123456789abcdef-tail","cache_salt":"s"})", false, c);
  EXPECT_FALSE(a.exact_keys);
  EXPECT_EQ(a.prompt_tokens, 9);                // 37 characters / 4
  ASSERT_EQ(a.block_keys.size(), 2u);           // blocks of 4 tokens × 4 characters
  EXPECT_EQ(a.block_keys, b.block_keys);        // the differing character is past the full blocks
  EXPECT_NE(a.block_keys[0], c.block_keys[0]);  // a salt isolates tenants
}

TEST(PromptKeyer, ChatMessagesAreKeyedByTheirJson) {
  SchedRequest a, b;
  const std::string long_text(80, 'x');
  keyer().key(R"({"messages":[{"role":"user","content":")" + long_text + R"("}]})", true, a);
  keyer().key(R"({"messages": [ {"role": "user", "content": ")" + long_text + R"("} ] })", true, b);
  EXPECT_FALSE(a.block_keys.empty());
  EXPECT_EQ(a.block_keys, b.block_keys);  // whitespace in the body does not change the keys
}

TEST(PromptKeyer, BadBodiesThrowWithTheReason) {
  const struct {
    const char* body;
    bool chat;
    const char* reason;
  } cases[] = {
      {"{bad", false, "not valid JSON"},
      {"{\"prompt\":\"\xff\xfe\"}", false, "not valid JSON"},  // not UTF-8
      {"[1,2]", false, "must be a JSON object"},
      {R"({"max_tokens":3})", false, "'prompt' is required"},
      {R"({"prompt":{"x":1}})", false, "string or an array of token ids"},
      {R"({"prompt":[1,2.5]})", false, "must be integers"},
      {R"({"prompt":[1,4294967296]})", false, "out of range"},
      {R"({"prompt":[1,-1]})", false, "out of range"},
      {R"({"messages":[]})", true, "non-empty array"},
      {R"({"prompt":"chat needs messages"})", true, "non-empty array"},
  };
  for (const auto& c : cases) {
    SchedRequest sr;
    try {
      keyer().key(c.body, c.chat, sr);
      ADD_FAILURE() << "accepted: " << c.body;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.reason), std::string::npos) << c.body << " -> " << e.what();
    }
  }
}

}  // namespace
}  // namespace llmd::router
