#pragma once
// The serving side of KV transfers: a listener that lets authenticated peers read the blocks pinned
// in a PinRegistry out of a registered region (issue 6 design §4).
//
// Per connection: HELLO (nonce, engine id, layout, fingerprint) -> AUTH -> AUTH_OK, then any number
// of READ and RELEASE frames. READs are served in arrival order (a client may pipeline them): the
// blocks are leased, then sent as BLOCK frames back to back in large gather writes straight from the
// region, and a READ_DONE ends each READ. A READ naming an unknown request or an unpinned block gets
// READ_DONE(error) before any data.
//
// With offer_ucx, HELLO says so and the TCP connection also serves UCX_INFO (the worker address, the
// region's rkey and base) and LEASE / DONE as below; the bytes then move by UCX one-sided reads.
//
// With offer_shm, the same handshake is also served on the abstract Unix socket
// "\0llmd-kvt/<engine_id>", whose AUTH_OK carries the arena's memfd (read-only), and that socket then
// serves LEASE / DONE / RELEASE: a LEASE leases the blocks until its DONE (answered DONE_OK), the
// connection's end, or io_timeout after the LEASE (the connection is then closed, so the reader gets
// no DONE_OK). HELLO on both sockets names the Unix socket (empty without shm) and the boot id.
//
// A peer whose address config.allowed_peers does not allow is hung up on before HELLO; a Unix-socket
// peer (a process of this host) counts as 127.0.0.1.
//
// Threading: all I/O runs on the executor given, which must not run handlers concurrently (a
// one-thread io_context or a strand). The region's pinned blocks must not change while leased.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/asio.hpp"
#include "common/shared_arena.hpp"
#include "kv/transfer/layout.hpp"
#include "kv/transfer/pin_registry.hpp"
#include "kv/transfer/transfer_backend.hpp"
#include "kv/transfer/transfer_config.hpp"

namespace llmd::kv::transfer {

struct ServerState;  // transfer_server.cpp

class TransferServer {
 public:
  // Called on the server's executor for each RELEASE frame.
  using ReleaseFn = std::function<void(std::string_view request_id, ReleaseOutcome outcome)>;

  // Binds config.host:config.port and listens (accepting starts with start()). Throws llmd::Error
  // for an empty secret, a layout check_layout refuses, or an address it cannot bind.
  TransferServer(asio::any_io_executor ex, TransferConfig config, KvRegion region, std::string fingerprint,
                 PinRegistry& pins, ReleaseFn on_release = {}, std::string engine_id = {});
  ~TransferServer();
  TransferServer(const TransferServer&) = delete;
  TransferServer& operator=(const TransferServer&) = delete;

  // Offers the shm backend: `arena` must be the memory the region is (region.base == arena.data(),
  // arena.size() == layout.arena_bytes()). Binds the Unix socket; call before start(). Throws
  // llmd::Error when the arena is not the region's, the socket name is taken (another server with
  // this engine id), or the arena cannot be reopened read-only. The arena must outlive the server.
  void offer_shm(const SharedArena& arena);

  // Offers the ucx backend: a UCX worker progressed on the server's executor, with the region
  // registered for remote reads. Peers then ask for its address and rkey (UCX_INFO) on their TCP
  // connection and read by LEASE / DONE there. UCX's own network devices are limited to the one
  // holding config.host (all of them for a wildcard). Call before start(); throws llmd::Error when
  // UCX cannot be initialised or the region registered.
  void offer_ucx();

  void start();
  // Closes the listener and every connection (leases end as their writes fail). Any thread.
  void stop();

  uint16_t port() const { return port_; }
  // 128 random bits per server unless given: a restarted server is another engine.
  const std::string& engine_id() const;
  // The abstract Unix socket's name without its leading NUL; empty unless offer_shm was called.
  const std::string& shm_name() const;

 private:
  std::shared_ptr<ServerState> st_;
  uint16_t port_ = 0;
};

}  // namespace llmd::kv::transfer
