#pragma once
// The shm transfer backend: a decode server on the same host as the prefill maps the prefill's KV
// arena read-only and copies blocks out of it with memcpy (issue 6 design §4, "shm").
//
// The prefill's TransferServer, when its region lives in a SharedArena (TransferServer::offer_shm),
// also listens on the abstract Unix socket "\0llmd-kvt/<engine_id>" and runs the same HELLO / AUTH /
// AUTH_OK handshake there; its AUTH_OK carries the arena's memfd (opened read-only) as SCM_RIGHTS.
// Abstract names live in the network namespace, so a connect that succeeds is a process of this
// kernel; the boot id in HELLO is checked too. Nothing is named in /dev/shm and nothing leaks on a
// crash: the memory goes with the last descriptor and mapping.
//
// prepare(): with the peer's engine id known (kv_transfer_params carry remote_engine_id) it connects
// straight to the Unix socket, with no TCP round trip; without one it reads the server's HELLO on
// TCP for the socket name and boot id, hangs up, and then connects. It authenticates both ways,
// receives the memfd and maps it read-only once (SharedArena::map_readonly checks size and seals).
// A failed connect (no shm offered, another host or network namespace) is kConnect: the caller may
// fall back to tcp.
//
// read(): LEASE (the server leases the blocks in its PinRegistry, so unpin waits, and answers
// LEASE_OK with each block's key and checksum computed while leased) -> keys checked -> copy_block
// from the mapping into the local region -> checksums of the copies checked -> DONE -> DONE_OK.
// DONE_OK says the lease held throughout; without it (the connection dropped, the server's
// io_timeout ended the lease) the copy is not trusted. A refused LEASE comes back as READ_DONE(error).
// Several reads may be in flight on one peer; replies are matched by xfer_id.
//
// Threading: the backend, its peers and every call on them belong to the executor given (one that
// does not run handlers concurrently). The copy runs on that executor's thread.
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/local/stream_protocol.hpp>

#include "common/deadline.hpp"
#include "common/shared_arena.hpp"
#include "kv/transfer/layout.hpp"
#include "kv/transfer/transfer_backend.hpp"
#include "kv/transfer/transfer_config.hpp"
#include "kv/transfer/wire.hpp"

namespace llmd::kv::transfer {

class Authenticator;

class ShmBackend final : public TransferBackend {
 public:
  // `local` is where pulled blocks go; `fingerprint` names the model whose blocks those are. Throws
  // llmd::Error for an empty secret or a layout check_layout refuses.
  ShmBackend(asio::any_io_executor ex, TransferConfig config, KvRegion local, std::string fingerprint);
  ~ShmBackend() override;

  std::string_view name() const override { return "shm"; }
  asio::awaitable<std::expected<std::unique_ptr<Peer>, XferError>> prepare(PeerInfo peer) override;
  asio::awaitable<std::expected<void, XferError>> read(Peer& peer, std::string_view remote_request_id,
                                                       std::span<const BlockPair> blocks) override;
  asio::awaitable<std::expected<void, XferError>> release(Peer& peer, std::string_view remote_request_id,
                                                          ReleaseOutcome outcome) override;

 private:
  asio::awaitable<std::expected<std::string, XferError>> socket_name_over_tcp(const PeerInfo& peer);

  asio::any_io_executor ex_;
  TransferConfig cfg_;
  KvRegion local_;
  std::string fingerprint_;
  std::unique_ptr<Authenticator> auth_;
  wire::BootId boot_id_;
};

// ---- The Unix-socket side of the shm transport, shared with TransferServer's shm listener ----

using unix_stream = asio::local::stream_protocol;

// The abstract socket name (without its leading NUL) of the server with this engine id.
std::string shm_socket_name(std::string_view engine_id);
// The endpoint of an abstract name: a NUL, then the name.
unix_stream::endpoint shm_endpoint(std::string_view name);

// This boot of this host (/proc/sys/kernel/random/boot_id, 16 bytes); zeros when unreadable.
wire::BootId read_boot_id();

// A Unix connection's time limit (common/deadline.hpp).
using UnixDeadline = BasicDeadline<unix_stream::socket>;

// Writes `bytes` whole with `fd` attached to the first byte (SCM_RIGHTS; the receiver gets a
// duplicate, ours stays open).
asio::awaitable<std::expected<void, XferError>> write_with_fd(unix_stream::socket& s, UnixDeadline& deadline,
                                                              std::span<const uint8_t> bytes, int fd);

// Reads exactly out.size() bytes; a descriptor that rides on them is put in `fd` (close-on-exec).
// More than one descriptor, or ancillary data cut short, is kProtocol (extra ones are closed).
asio::awaitable<std::expected<void, XferError>> read_with_fd(unix_stream::socket& s, UnixDeadline& deadline,
                                                             std::span<uint8_t> out, UniqueFd& fd);

}  // namespace llmd::kv::transfer
