#include "kv/transfer/xfer_error.hpp"

namespace llmd::kv::transfer {

std::string_view to_string(XferError e) {
  switch (e) {
    case XferError::kConnect:
      return "connect";
    case XferError::kAuth:
      return "auth";
    case XferError::kIncompatible:
      return "incompatible";
    case XferError::kEngineRestarted:
      return "engine_restarted";
    case XferError::kUnknownRequest:
      return "unknown_request";
    case XferError::kBadBlock:
      return "bad_block";
    case XferError::kKeyMismatch:
      return "key_mismatch";
    case XferError::kChecksum:
      return "checksum";
    case XferError::kTruncated:
      return "truncated";
    case XferError::kTimeout:
      return "timeout";
    case XferError::kCancelled:
      return "cancelled";
    case XferError::kProtocol:
      return "protocol";
  }
  return "unknown";
}

}  // namespace llmd::kv::transfer
