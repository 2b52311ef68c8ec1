#pragma once
// Settings of a transfer endpoint (server and reader), filled in one place from flags (serve.cpp,
// later) or by tests.
#include <chrono>
#include <cstdint>
#include <string>

#include "kv/transfer/peer_filter.hpp"

namespace llmd::kv::transfer {

struct TransferConfig {
  std::string host = "127.0.0.1";  // where the server binds
  uint16_t port = 0;               // 0: any free port (TransferServer::port() says which)
  std::string secret;              // shared by every server of a cluster; empty: refused
  PeerFilter allowed_peers;        // who may connect at all (empty: anyone with the secret)
  // How long one step of a transfer (a frame, a batch of blocks) may take before the connection is
  // dropped, which also bounds how long a lease can hold blocks.
  std::chrono::milliseconds io_timeout{10000};
  std::chrono::milliseconds connect_timeout{5000};
  // The client's single attempt to authenticate.
  std::chrono::milliseconds auth_timeout{5000};
  // Socket send/receive buffers: large enough for a few blocks in flight on loopback or a LAN.
  int socket_buffer_bytes = 4 << 20;
  // Bytes of blocks the server hands to one gather write (fewer syscalls and wake-ups per block).
  uint64_t write_batch_bytes = 8 << 20;

  // Tests only: make the server misbehave at block `block` (its index within each READ).
  struct Fault {
    enum Kind { kNone, kCorrupt, kTruncate } kind = kNone;
    int block = 0;
  } fault;
};

}  // namespace llmd::kv::transfer
