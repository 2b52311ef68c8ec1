#include "cluster/spec.hpp"

namespace llmd::cluster {

std::string_view role_name(Role r) {
  switch (r) {
    case Role::kPrefill:
      return "prefill";
    case Role::kDecode:
      return "decode";
    case Role::kBoth:
      return "both";
  }
  return "both";
}

std::string_view pool_key(Role r) {
  return r == Role::kBoth ? "aggregated" : role_name(r);
}

std::string_view transport_name(TransportType t) {
  switch (t) {
    case TransportType::kTcp:
      return "tcp";
    case TransportType::kShm:
      return "shm";
    case TransportType::kUcx:
      return "ucx";
    case TransportType::kAuto:
      return "auto";
  }
  return "auto";
}

std::string_view tier_name(TierType t) {
  switch (t) {
    case TierType::kHost:
      return "host";
    case TierType::kDisk:
      return "disk";
    case TierType::kRemote:
      return "remote";
  }
  return "host";
}

std::string ModelSpec::file_name() const {
  return std::filesystem::path(path).filename().string();
}

const Pool* InferenceCluster::pool(Role r) const {
  for (const Pool& p : pools)
    if (p.role == r) return &p;
  return nullptr;
}

}  // namespace llmd::cluster
