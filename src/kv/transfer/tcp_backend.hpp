#pragma once
// The tcp transfer backend: blocks travel as BLOCK frames on the peer's authenticated control
// connection (issue 6 design §4). Several reads may be in flight on one peer; the server answers
// them in order, so one reader loop per peer takes each block straight into the local segments it
// belongs to (one scatter read per block), then checks its key and checksum.
//
// Threading: the backend, its peers and every call on them belong to the executor given (one
// that does not run handlers concurrently).
#include <memory>
#include <string>

#include "kv/transfer/layout.hpp"
#include "kv/transfer/transfer_backend.hpp"
#include "kv/transfer/transfer_config.hpp"

namespace llmd::kv::transfer {

class Authenticator;

class TcpBackend final : public TransferBackend {
 public:
  // `local` is where pulled blocks go; `fingerprint` names the model whose blocks those are. Throws
  // llmd::Error for an empty secret or a layout check_layout refuses.
  TcpBackend(asio::any_io_executor ex, TransferConfig config, KvRegion local, std::string fingerprint);
  ~TcpBackend() override;

  std::string_view name() const override { return "tcp"; }
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
};

}  // namespace llmd::kv::transfer
