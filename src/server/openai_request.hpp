#pragma once
// The OpenAI request bodies the server accepts (/v1/completions, /v1/chat/completions), parsed and
// checked field by field: a bad field is reported with its name, as OpenAI and vLLM do.
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/sampler.hpp"

namespace llmd::server {

// An OpenAI-style error: HTTP status and the body's error fields.
struct ApiError {
  int status = 400;
  std::string message;
  std::string param;         // the offending field, when there is one
  std::string type() const;  // vLLM's names: "BadRequestError", "NotFoundError", ...
  std::string body() const;  // {"error":{"message","type","param","code"}}
};

enum class Endpoint { kCompletions, kChat };

// vLLM's kv_transfer_params (the NixlConnector shape, DESIGN.md "P/D"): the prefill leg carries
// do_remote_decode; its answer, passed unchanged to the decode server, carries do_remote_prefill
// and where the prompt's blocks wait.
struct KvTransferParams {
  bool do_remote_decode = false;   // the prefill leg: keep the prompt's blocks for a decode server
  bool do_remote_prefill = false;  // the decode leg: pull the blocks named below
  std::string remote_engine_id;
  std::string remote_host;
  int32_t remote_port = 0;
  std::vector<int32_t> remote_block_ids;
  std::string remote_request_id;
};

constexpr std::size_t kMaxRemoteBlocks = 1u << 16;
constexpr std::size_t kMaxRemoteIdBytes = 256;

struct GenerationRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  // Completions: the prompt as text or as token ids (exactly one is set). Chat: messages.
  std::optional<std::string> prompt_text;
  std::optional<std::vector<int32_t>> prompt_tokens;
  nlohmann::json messages;
  nlohmann::json tools;
  nlohmann::json chat_template_kwargs;
  bool add_generation_prompt = true;

  std::optional<int32_t> max_tokens;  // unset: 16 for completions, the rest of the context for chat
  engine::SamplingParams sampling;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool skip_special_tokens = true;
  int32_t logprobs = -1;  // -1: off; else how many alternatives per token
  bool echo = false;
  int32_t n = 1;
  std::string cache_salt;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::optional<KvTransferParams> kv_transfer;
};

constexpr int32_t kMaxLogprobs = 20;
constexpr int32_t kMaxChoices = 16;

std::expected<GenerationRequest, ApiError> parse_generation_request(Endpoint endpoint, std::string_view body);

}  // namespace llmd::server
