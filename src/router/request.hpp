#pragma once
// What the scheduler knows of one request: the prompt as block keys (exact token blocks keyed as
// the servers key them when the router has the model's tokenizer or the prompt came as token ids;
// llm-d's 4-characters-per-token blocks otherwise), its length, and the headers plugins read.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/block_hash.hpp"
#include "common/http_headers.hpp"

namespace llmd::model {
class Tokenizer;
class ChatTemplate;
}  // namespace llmd::model

namespace llmd::router {

inline constexpr std::string_view kSessionHeader = "x-session-token";
inline constexpr std::string_view kRequestIdHeader = "x-request-id";

struct SchedRequest {
  std::string request_id;
  std::string model;
  std::string session_token;  // x-session-token, as sent
  // The prompt's full blocks' keys (low 64 bits); exact when token-based.
  std::vector<uint64_t> block_keys;
  bool exact_keys = false;
  int32_t block_size = 16;    // tokens per key when exact (characters / 4 when not)
  int64_t prompt_tokens = 0;  // exact or estimated (characters / 4)
};

// How prompts become keys; one per router, shared by every request.
struct PromptKeyer {
  const model::Tokenizer* tokenizer = nullptr;         // exact keys for text prompts when set
  const model::ChatTemplate* chat_template = nullptr;  // with the tokenizer, for chat requests
  std::string fingerprint;   // root of the keys: must equal the servers' (DESIGN.md)
  int32_t block_size = 16;   // the servers' block size
  int32_t max_blocks = 256;  // longer prompts are keyed on their first max_blocks blocks

  // Fills model, keys, exactness and length from an OpenAI body's JSON text (completions or chat).
  // Throws llmd::Error (a 400) for malformed JSON or a body without a usable prompt or messages.
  void key(std::string_view body, bool chat, SchedRequest& out) const;
};

}  // namespace llmd::router
