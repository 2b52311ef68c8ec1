#pragma once
// The ucx transfer backend: blocks move by UCX one-sided reads (ucp_get) straight from the prefill's
// registered KV region into ours, over whatever UCX finds between the two hosts (RDMA, tcp, or on one
// host shared memory / cma). The control stays on the authenticated TCP connection:
//
// prepare(): connect + HELLO / AUTH / AUTH_OK (client_handshake); the server's HELLO must offer ucx
// (else kIncompatible); UCX_INFO -> UCX_INFO_OK gives its worker address, the region's packed rkey
// and the region's base address; an endpoint is created to that worker (peer failure detection on)
// and the rkey unpacked.
// read(): the leased read of lease_client.hpp; the copy posts one get per run of consecutive blocks
// in each segment, waits for them (io_timeout; then the endpoint is closed and the read fails), and
// checks the checksum of every block received.
//
// Threading: the backend, its peers and every call on them belong to the executor given (one that
// does not run handlers concurrently); the backend's UCX worker is progressed there.
#include <memory>
#include <string>

#include "kv/transfer/layout.hpp"
#include "kv/transfer/transfer_backend.hpp"
#include "kv/transfer/transfer_config.hpp"

namespace llmd::kv::transfer {

class Authenticator;
class UcxWorker;

class UcxBackend final : public TransferBackend {
 public:
  // `local` is where pulled blocks go; `fingerprint` names the model whose blocks those are. Throws
  // llmd::Error for an empty secret, a layout check_layout refuses, or UCX failing to start. UCX's
  // network devices are those holding config.host (all for a wildcard), as for the server.
  UcxBackend(asio::any_io_executor ex, TransferConfig config, KvRegion local, std::string fingerprint);
  ~UcxBackend() override;

  // Ends the worker's progress loop, so that the executor can run out of work (any thread).
  void stop();

  std::string_view name() const override { return "ucx"; }
  asio::awaitable<std::expected<std::unique_ptr<Peer>, XferError>> prepare(PeerInfo peer) override;
  asio::awaitable<std::expected<void, XferError>> read(Peer& peer, std::string_view remote_request_id,
                                                       std::span<const BlockPair> blocks) override;
  asio::awaitable<std::expected<void, XferError>> release(Peer& peer, std::string_view remote_request_id,
                                                          ReleaseOutcome outcome) override;

 private:
  asio::any_io_executor ex_;
  TransferConfig cfg_;
  KvRegion local_;
  std::string fingerprint_;
  std::unique_ptr<Authenticator> auth_;
  std::shared_ptr<UcxWorker> worker_;  // peers hold it too: their endpoints go before it
};

}  // namespace llmd::kv::transfer
