#pragma once
// The request bodies of P/D disaggregation's two legs, as vLLM's disaggregated proxy and llm-d's
// sidecar write them (DESIGN.md "P/D"): the prefill leg is the client's request answered whole with
// one token, its prompt's blocks kept for a decode server; the decode leg is the client's request
// with the kv_transfer_params the prefill leg answered, passed on unchanged.
#include <optional>
#include <string>
#include <string_view>

namespace llmd::kv::transfer {

// max_tokens 1 (max_completion_tokens dropped), stream false (stream_options dropped), n 1,
// kv_transfer_params {do_remote_decode: true}. nullopt when `body` is not a JSON object or already
// carries kv_transfer_params (someone else runs the legs).
std::optional<std::string> prefill_leg_body(std::string_view body);

// `body` with the kv_transfer_params of `prefill_response` (a prefill leg's answer); nullopt when
// the answer carries none (the prefill server does not do P/D) or is not JSON.
std::optional<std::string> decode_leg_body(std::string_view body, std::string_view prefill_response);

}  // namespace llmd::kv::transfer
