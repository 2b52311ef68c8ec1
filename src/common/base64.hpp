#pragma once
// Standard base64 (RFC 4648 §4, padded), for llm-d's x-session-token header.
#include <optional>
#include <string>
#include <string_view>

namespace llmd {

std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);  // nullopt when malformed

}  // namespace llmd
