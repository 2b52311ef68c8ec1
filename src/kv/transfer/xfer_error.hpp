#pragma once
// Why a transfer failed. The values travel in READ_DONE and ERROR frames (u16), so they are fixed;
// 0 on the wire means success.
#include <cstdint>
#include <optional>
#include <string_view>

namespace llmd::kv::transfer {

enum class XferError : uint16_t {
  kConnect = 1,          // cannot connect, or the connection failed
  kAuth = 2,             // the peer does not know our secret (or we do not know its)
  kIncompatible = 3,     // KV layout or model fingerprint differ
  kEngineRestarted = 4,  // the peer is not the engine the blocks were pinned in
  kUnknownRequest = 5,   // no blocks pinned under that request id (expired or released)
  kBadBlock = 6,         // a block id not pinned under that request id
  kKeyMismatch = 7,      // a block's key differs from the expected one (other prompt or salt)
  kChecksum = 8,         // a block's bytes differ from what the sender hashed
  kTruncated = 9,        // the connection ended in the middle of a transfer
  kTimeout = 10,
  kCancelled = 11,
  kProtocol = 12,  // a malformed or unexpected frame
};

inline constexpr uint16_t kMaxXferError = 12;

// A metric label / log word ("checksum", "truncated", ...).
std::string_view to_string(XferError e);

// The error for a wire code; nullopt for 0 or an unknown code.
inline std::optional<XferError> xfer_error_from_wire(uint16_t code) {
  if (code == 0 || code > kMaxXferError) return std::nullopt;
  return static_cast<XferError>(code);
}

}  // namespace llmd::kv::transfer
