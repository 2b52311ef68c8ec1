#pragma once
// What the serving side hands the engine thread (a request) and gets back from it (outputs).
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/kv_transfer.hpp"
#include "engine/sampler.hpp"

namespace llmd::engine {

enum class FinishReason { kNone, kStop, kLength, kAbort, kError };
const char* finish_reason_name(FinishReason r);  // OpenAI's: "stop", "length"; ours: "abort", "error"

struct TokenLogprobs {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;  // the most likely alternatives, highest first
};

// One delivery from the engine thread: the tokens generated for a request in one step (one, unless
// the request is finishing), and when it ends, why. Delivered in order, exactly once per step that
// produced something, and a finished output is the last.
struct RequestOutput {
  std::vector<int32_t> tokens;
  std::vector<TokenLogprobs> logprobs;  // one per token when the request asked for them
  FinishReason finish = FinishReason::kNone;
  std::string error;             // when finish == kError
  int32_t prompt_tokens = 0;     // set on every output
  int32_t cached_tokens = 0;     // prompt tokens served from the prefix cache
  int32_t generated_tokens = 0;  // so far, including these
  // On the finishing output of a request with RequestSpec::kv_pin_id: the blocks kept for a decode
  // server to pull (vLLM's remote_block_ids), the prompt's full blocks in order.
  std::vector<int32_t> kv_pinned_blocks;
};

// Called on the engine thread; must not block (the HTTP side pushes into an async queue).
using OutputSink = std::function<void(RequestOutput&&)>;

struct RequestSpec {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int32_t max_tokens = 16;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;  // finish with "stop" after generating one of these
  int32_t logprobs = -1;                // -1: none; n >= 0: the chosen token's and n alternatives
  std::string cache_salt;               // isolates prefix-cache entries between tenants
  // The prefill leg of a disaggregated request (vLLM's do_remote_decode): when it finishes, the
  // prompt's full blocks stay pinned under this id until Engine::kv_release(id) or the pin timeout.
  std::string kv_pin_id;
  // The decode leg (vLLM's do_remote_prefill): the prompt's blocks wait on a prefill server. Those
  // this engine does not hold are pulled (EngineConfig::kv_puller) instead of computed; if the
  // pull fails, the prompt is computed here.
  std::optional<RemoteBlocks> kv_remote;
  OutputSink sink;
};

}  // namespace llmd::engine
