// The OpenAI API of `llmd serve` over real sockets: llama.cpp's golden text, streaming, stop
// strings, auth, and every kind of bad input answered with an OpenAI-style error while the server
// stays up.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "server/server_fixture.hpp"

namespace llmd::server {
namespace {

using nlohmann::json;

json golden(int i) {
  std::ifstream in(std::string(LLMD_SHARED_DIR) + "/models/stories260K.golden.json");
  return json::parse(in)[i];
}

// The text of an SSE stream's chunks, and whether it ended with [DONE].
struct Streamed {
  std::string text;
  std::string finish_reason;
  json usage;
  bool done = false;
};

Streamed parse_sse(const std::string& body, bool chat) {
  Streamed s;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    const std::string data = body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      s.done = true;
      continue;
    }
    const json j = json::parse(data);
    if (j.contains("usage") && !j["usage"].is_null()) s.usage = j["usage"];
    for (const auto& c : j["choices"]) {
      if (chat) {
        if (c["delta"].contains("content")) s.text += c["delta"]["content"].get<std::string>();
      } else {
        s.text += c["text"].get<std::string>();
      }
      if (!c["finish_reason"].is_null()) s.finish_reason = c["finish_reason"];
    }
  }
  return s;
}

TEST(OpenAiServer, CompletionIsLlamaCppsGoldenText) {
  ServerFixture f;
  const json g = golden(0);  // "Once upon a time": its completion starts with ',' (no space to keep)
  const auto r = f.post(
      "/v1/completions",
      json{{"model", "stories"}, {"prompt", g["prompt"]}, {"max_tokens", 64}, {"temperature", 0}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], g["completion"]);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(j["usage"]["completion_tokens"], 64);
  EXPECT_EQ(j["usage"]["total_tokens"], 69);
}

TEST(OpenAiServer, StreamingSendsTheSameTextChunkByChunk) {
  ServerFixture f;
  const json req = {{"prompt", "Lily wanted"}, {"max_tokens", 40}, {"temperature", 0}};
  const auto whole = json::parse(f.post("/v1/completions", req.dump()).body);
  json sreq = req;
  sreq["stream"] = true;
  sreq["stream_options"] = {{"include_usage", true}};
  const auto r = f.post("/v1/completions", sreq.dump());
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.headers.get("content-type").value_or("").find("text/event-stream"), std::string::npos);
  const Streamed s = parse_sse(r.body, false);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.text, whole["choices"][0]["text"]);
  EXPECT_EQ(s.finish_reason, "length");
  EXPECT_EQ(s.usage["completion_tokens"], 40);
}

TEST(OpenAiServer, ChatUsesTheTemplateAndStreams) {
  ServerFixture f;
  const json req = {{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
                    {"max_tokens", 12},
                    {"temperature", 0}};
  const auto r = f.post("/v1/chat/completions", req.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  // No template in the GGUF: ChatML, as llama.cpp's server falls back to; its tokens are counted.
  const auto tk = json::parse(f.post("/tokenize", json{{"messages", req["messages"]}}.dump()).body);
  EXPECT_EQ(j["usage"]["prompt_tokens"], tk["count"]);
  json sreq = req;
  sreq["stream"] = true;
  const Streamed s = parse_sse(f.post("/v1/chat/completions", sreq.dump()).body, true);
  EXPECT_EQ(s.text, j["choices"][0]["message"]["content"]);
}

TEST(OpenAiServer, StopStringsCutTheTextAndFinishWithStop) {
  ServerFixture f;
  const json g = golden(0);
  const auto r =
      f.post("/v1/completions",
             json{{"prompt", g["prompt"]}, {"max_tokens", 64}, {"temperature", 0}, {"stop", {"Lily", "zzz"}}}
                 .dump());
  const json j = json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["text"], ", there was a little girl named ");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  json sreq = {
      {"prompt", g["prompt"]}, {"max_tokens", 64}, {"temperature", 0}, {"stop", "Lily"}, {"stream", true}};
  const Streamed s = parse_sse(f.post("/v1/completions", sreq.dump()).body, false);
  EXPECT_EQ(s.text, ", there was a little girl named ");
  EXPECT_EQ(s.finish_reason, "stop");
}

TEST(OpenAiServer, SeededSamplingIsReproducibleAndNChoicesDiffer) {
  ServerFixture f;
  const json req = {{"prompt", "Once"}, {"max_tokens", 24}, {"temperature", 1.0}, {"seed", 7}, {"n", 2}};
  const json a = json::parse(f.post("/v1/completions", req.dump()).body);
  const json b = json::parse(f.post("/v1/completions", req.dump()).body);
  ASSERT_EQ(a["choices"].size(), 2u);
  EXPECT_EQ(a["choices"], b["choices"]);
  EXPECT_NE(a["choices"][0]["text"], a["choices"][1]["text"]);
}

TEST(OpenAiServer, LogprobsAndEcho) {
  ServerFixture f;
  const json c = json::parse(f.post("/v1/completions", R"({"prompt": "Once upon a time", "max_tokens": 6,
      "temperature": 0, "logprobs": 2, "echo": true})")
                                 .body);
  const json& ch = c["choices"][0];
  EXPECT_TRUE(ch["text"].get<std::string>().starts_with("Once upon a time,")) << ch["text"];
  ASSERT_EQ(ch["logprobs"]["tokens"].size(), 6u);
  ASSERT_EQ(ch["logprobs"]["top_logprobs"][0].size(), 2u);
  for (const auto& lp : ch["logprobs"]["token_logprobs"]) EXPECT_LE(lp.get<double>(), 0.0);
  // Greedy: the chosen token is the most likely one, so its logprob is the top entry's.
  double best = -1e9;
  for (const auto& [tok, lp] : ch["logprobs"]["top_logprobs"][0].items())
    best = std::max(best, lp.get<double>());
  EXPECT_DOUBLE_EQ(ch["logprobs"]["token_logprobs"][0].get<double>(), best);

  const json chat =
      json::parse(f.post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "Hi"}],
      "max_tokens": 4, "logprobs": true, "top_logprobs": 3})")
                      .body);
  const json& content = chat["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 4u);
  EXPECT_EQ(content[0]["top_logprobs"].size(), 3u);
  EXPECT_TRUE(content[0]["bytes"].is_array());
}

TEST(OpenAiServer, ModelsHealthTokenizeDetokenize) {
  ServerFixture f;
  const json m = json::parse(f.get("/v1/models").body);
  EXPECT_EQ(m["data"][0]["id"], "stories");
  EXPECT_EQ(m["data"][0]["max_model_len"], 512);
  EXPECT_EQ(m["data"][0]["metadata"]["role"], "both");
  EXPECT_EQ(f.get("/health").status, 200);
  const json t = json::parse(f.post("/tokenize", R"({"prompt":"Once upon a time"})").body);
  EXPECT_EQ(t["tokens"], json({1, 403, 407, 261, 378}));
  const json d = json::parse(f.post("/detokenize", R"({"tokens":[403,407,261,378]})").body);
  EXPECT_EQ(d["prompt"], "Once upon a time");
}

TEST(OpenAiServer, ApiKeyIsRequiredWhenConfigured) {
  ServerFixture f({.api_key = "sekret"});
  const std::string body = R"({"prompt":"Once","max_tokens":2})";
  EXPECT_EQ(f.post("/v1/completions", body).status, 401);
  EXPECT_EQ(f.post("/v1/completions", body, {{"Authorization", "Bearer wrong"}}).status, 401);
  EXPECT_EQ(f.post("/v1/completions", body, {{"Authorization", "Bearer sekret"}}).status, 200);
  EXPECT_EQ(f.get("/health").status, 200);  // probes need no key
}

struct BadCase {
  const char* name;
  std::string body;
  int status;
  const char* param;  // expected error.param, or nullptr for null
};

TEST(OpenAiServer, BadInputGetsOpenAiErrorsAndTheServerStaysUp) {
  ServerFixture f;
  const std::vector<BadCase> cases = {
      {"malformed JSON", R"({"prompt": "x",)", 400, nullptr},
      {"not an object", R"(["prompt"])", 400, nullptr},
      {"missing prompt", R"({"max_tokens": 3})", 400, "prompt"},
      {"wrong prompt type", R"({"prompt": 5})", 400, "prompt"},
      {"wrong temperature type", R"({"prompt": "x", "temperature": "hot"})", 400, "temperature"},
      {"temperature out of range", R"({"prompt": "x", "temperature": 9})", 400, "temperature"},
      {"max_tokens zero", R"({"prompt": "x", "max_tokens": 0})", 400, "max_tokens"},
      {"max_tokens negative", R"({"prompt": "x", "max_tokens": -5})", 400, "max_tokens"},
      {"max_tokens float", R"({"prompt": "x", "max_tokens": 2.5})", 400, "max_tokens"},
      {"unknown model", R"({"model": "gpt-9", "prompt": "x"})", 404, "model"},
      {"token id out of vocabulary", R"({"prompt": [1, 99999]})", 400, "prompt"},
      {"prompt longer than the context", json{{"prompt", std::vector<int>(600, 5)}}.dump(), 400, nullptr},
      {"prompt plus max_tokens past the context",
       json{{"prompt", std::vector<int>(500, 5)}, {"max_tokens", 20}}.dump(), 400, nullptr},
      {"non-UTF-8 text", std::string("{\"prompt\": \"caf\xC3\x28\"}"), 400, nullptr},
      {"n too large", R"({"prompt": "x", "n": 1000})", 400, "n"},
      {"bad stop", R"({"prompt": "x", "stop": [1, 2]})", 400, "stop"},
      {"bad logprobs", R"({"prompt": "x", "logprobs": 100})", 400, "logprobs"},
  };
  for (const auto& c : cases) {
    const auto r = f.post("/v1/completions", c.body);
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.body;
    const json j = json::parse(r.body, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << c.name;
    ASSERT_TRUE(j.contains("error")) << c.name;
    EXPECT_TRUE(j["error"]["message"].is_string() && !j["error"]["message"].get<std::string>().empty())
        << c.name;
    EXPECT_TRUE(j["error"]["type"].is_string()) << c.name;
    EXPECT_EQ(j["error"]["code"], c.status) << c.name;
    if (c.param) {
      EXPECT_EQ(j["error"]["param"], c.param) << c.name;
    }
  }
  const auto chat = f.post("/v1/chat/completions", R"({"messages": "hello"})");
  EXPECT_EQ(chat.status, 400);
  const auto huge = f.post("/v1/completions", std::string(2 << 20, 'x'));
  EXPECT_EQ(huge.status, 413);
  EXPECT_EQ(f.get("/nope").status, 404);
  EXPECT_EQ(f.get("/v1/completions").status, 405);
  // Still serving.
  EXPECT_EQ(f.post("/v1/completions", R"({"prompt": "Once", "max_tokens": 4})").status, 200);
}

int connect_loopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST(OpenAiServer, ThousandConnectionsDroppedMidRequestLeaveItServing) {
  ServerFixture f;
  const std::string full =
      R"({"prompt": "Once upon a time", "max_tokens": 200, "ignore_eos": true, "stream": true})";
  for (int i = 0; i < 1000; ++i) {
    const int fd = connect_loopback(f.port());
    ASSERT_GE(fd, 0);
    std::string req =
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
        std::to_string(full.size()) + "\r\n\r\n";
    if (i % 3 == 1) req += full.substr(0, full.size() / 2);  // half a body
    if (i % 3 == 2) req += full;                             // a whole streaming request, then gone
    if (i % 3 == 0) req.resize(req.size() / 2);              // half the headers
    ASSERT_GT(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), 0);
    ::close(fd);
  }
  // The abandoned generations are cancelled, and the server answers as before.
  const auto r =
      f.post("/v1/completions", R"({"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0})");
  EXPECT_EQ(r.status, 200);
  for (int i = 0; i < 400 && f.engine().stats().running + f.engine().stats().waiting > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(f.engine().stats().running + f.engine().stats().waiting, 0);
}

TEST(OpenAiServer, PrefixCacheHitComputesOnlyTheSuffixAndChangesNothing) {
  ServerFixture f;
  std::vector<int> shared(384);
  for (size_t i = 0; i < shared.size(); ++i) shared[i] = 3 + static_cast<int>((i * 31) % 500);
  std::vector<int> a = shared, b = shared;
  for (int i = 0; i < 20; ++i) a.push_back(300 + i), b.push_back(400 + i);
  auto counter = [&](const std::string& name) {
    const std::string m = f.get("/metrics").body;
    const std::regex re("\n" + name + "\\{[^}]*\\} ([0-9.e+]+)");
    std::smatch sm;
    return std::regex_search(m, sm, re) ? std::stod(sm[1]) : -1.0;
  };
  auto complete = [&](const std::vector<int>& p, const std::string& salt) {
    json req = {{"prompt", p}, {"max_tokens", 16}, {"temperature", 0}};
    if (!salt.empty()) req["cache_salt"] = salt;
    return json::parse(f.post("/v1/completions", req.dump()).body);
  };
  complete(a, "");
  const double q0 = counter("vllm:prefix_cache_queries_total"), h0 = counter("vllm:prefix_cache_hits_total");
  const json warm = complete(b, "");
  const double q1 = counter("vllm:prefix_cache_queries_total"), h1 = counter("vllm:prefix_cache_hits_total");
  EXPECT_EQ(h1 - h0, 384);
  EXPECT_LE((q1 - q0) - (h1 - h0), 20 + 16) << "computed more than one block beyond the uncached suffix";
  EXPECT_EQ(warm["usage"]["prompt_tokens_details"]["cached_tokens"], 384);
  const json cold = complete(b, "another-tenant");  // a salt isolates the cache: computed from scratch
  EXPECT_EQ(cold["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(warm["choices"][0]["text"], cold["choices"][0]["text"]);
}

}  // namespace
}  // namespace llmd::server
