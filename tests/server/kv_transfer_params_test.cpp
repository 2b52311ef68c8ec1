// vLLM's kv_transfer_params on the OpenAI request: read field by field, every bad field named.
#include "server/openai_request.hpp"

#include <gtest/gtest.h>

namespace llmd::server {
namespace {

std::expected<GenerationRequest, ApiError> parse(const std::string& kv, const std::string& extra = "") {
  return parse_generation_request(Endpoint::kCompletions, R"({"prompt": [1, 2, 3], "max_tokens": 4)" + extra +
                                                              R"(, "kv_transfer_params": )" + kv + "}");
}

TEST(KvTransferParams, BothLegsAreReadAsVllmSendsThem) {
  auto prefill = parse(R"({"do_remote_decode": true, "do_remote_prefill": false})");
  ASSERT_TRUE(prefill) << prefill.error().message;
  ASSERT_TRUE(prefill->kv_transfer);
  EXPECT_TRUE(prefill->kv_transfer->do_remote_decode);
  EXPECT_FALSE(prefill->kv_transfer->do_remote_prefill);

  auto decode = parse(R"({"do_remote_decode": false, "do_remote_prefill": true, "remote_engine_id": "e1",
      "remote_host": "10.0.0.7", "remote_port": 5600, "remote_block_ids": [4, 0, 9],
      "remote_request_id": "cmpl-1", "tp_size": 1})");  // fields we do not use are ignored
  ASSERT_TRUE(decode) << decode.error().message;
  const KvTransferParams& p = *decode->kv_transfer;
  EXPECT_TRUE(p.do_remote_prefill);
  EXPECT_EQ(p.remote_engine_id, "e1");
  EXPECT_EQ(p.remote_host, "10.0.0.7");
  EXPECT_EQ(p.remote_port, 5600);
  EXPECT_EQ(p.remote_block_ids, (std::vector<int32_t>{4, 0, 9}));
  EXPECT_EQ(p.remote_request_id, "cmpl-1");

  EXPECT_FALSE(parse_generation_request(Endpoint::kCompletions, R"({"prompt": "x"})")->kv_transfer);
  EXPECT_FALSE(parse("null")->kv_transfer);
}

TEST(KvTransferParams, BadFieldsAreNamed) {
  const std::string ok_decode =
      R"("do_remote_prefill": true, "remote_host": "h", "remote_port": 1, "remote_request_id": "r")";
  const std::pair<std::string, std::string> cases[] = {
      {"[]", "kv_transfer_params"},
      {R"({"do_remote_decode": "yes"})", "kv_transfer_params.do_remote_decode"},
      {R"({"do_remote_decode": true, "do_remote_prefill": true})", "kv_transfer_params.do_remote_prefill"},
      {"{" + ok_decode + R"(, "remote_port": 70000})", "kv_transfer_params.remote_port"},
      {R"({"do_remote_prefill": true, "remote_port": 1, "remote_request_id": "r"})",
       "kv_transfer_params.remote_host"},
      {R"({"do_remote_prefill": true, "remote_host": "h", "remote_request_id": "r"})",
       "kv_transfer_params.remote_port"},
      {R"({"do_remote_prefill": true, "remote_host": "h", "remote_port": 1})",
       "kv_transfer_params.remote_request_id"},
      {"{" + ok_decode + R"(, "remote_block_ids": [1, -2]})", "kv_transfer_params.remote_block_ids"},
      {"{" + ok_decode + R"(, "remote_block_ids": [1.5]})", "kv_transfer_params.remote_block_ids"},
      {"{" + ok_decode + R"(, "remote_block_ids": 3})", "kv_transfer_params.remote_block_ids"},
      {"{" + ok_decode + R"(, "remote_request_id": ")" + std::string(300, 'r') + "\"}",
       "kv_transfer_params.remote_request_id"},
      {"{" + ok_decode + R"(, "remote_engine_id": 5})", "kv_transfer_params.remote_engine_id"},
  };
  for (const auto& [kv, param] : cases) {
    const auto r = parse(kv);
    ASSERT_FALSE(r) << kv;
    EXPECT_EQ(r.error().status, 400);
    EXPECT_EQ(r.error().param, param) << kv;
    EXPECT_NE(r.error().message.find("'" + param + "'"), std::string::npos) << r.error().message;
  }
  std::string many = "[";
  for (std::size_t i = 0; i <= kMaxRemoteBlocks; ++i) many += (i ? ",1" : "1");
  EXPECT_EQ(parse("{" + ok_decode + R"(, "remote_block_ids": )" + many + "]}").error().param,
            "kv_transfer_params.remote_block_ids");
  // The prefill leg answers once and whole.
  EXPECT_EQ(parse(R"({"do_remote_decode": true})", R"(, "stream": true)").error().param, "stream");
  EXPECT_EQ(parse(R"({"do_remote_decode": true})", R"(, "n": 2)").error().param, "n");
}

}  // namespace
}  // namespace llmd::server
