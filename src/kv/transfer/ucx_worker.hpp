#pragma once
// UCX (UCP) under asio: one context and one worker, progressed on an executor. The ucx transfer
// backend reads with it and the transfer server serves with it.
//
// Progress is event driven: the worker's event fd is watched by the executor's reactor, and drive()
// progresses the worker until ucp_worker_arm says nothing is left, before each wait. The serving side
// must progress too (UCX's wire-up, and tcp's software RMA, need the target's worker), which this loop
// does without a thread of its own or a spinning core. Whoever posts operations calls drive() after
// posting, since some transports (shared memory, cma) complete in progress without any event.
//
// Network devices are limited to `net_devices` (UCX_NET_DEVICES syntax; "all"), so the listening
// sockets UCX opens for its own transports stay on the interface the transfer server was told to use.
//
// Threading: the executor's thread only (the worker is UCS_THREAD_MODE_SINGLE), except stop().
#include <ucp/api/ucp.h>

#include <cstddef>
#include <memory>
#include <string>

#include "common/asio.hpp"

namespace llmd::kv::transfer {

struct UcxWorkerState;  // ucx_worker.cpp

class UcxWorker {
 public:
  // Throws llmd::Error when UCX cannot be initialised.
  UcxWorker(asio::any_io_executor ex, const std::string& net_devices);
  ~UcxWorker();
  UcxWorker(const UcxWorker&) = delete;
  UcxWorker& operator=(const UcxWorker&) = delete;

  ucp_context_h context() const;
  ucp_worker_h worker() const;
  // The worker's address as bytes, for a peer's ucp_ep_create.
  const std::string& address() const;

  // Progresses until the worker is armed (nothing pending); executor thread, not from a UCX callback.
  void drive();
  // Ends the progress loop (any thread); the worker stays valid until destruction.
  void stop();

 private:
  std::shared_ptr<UcxWorkerState> st_;
};

// A memory region registered with a context, and its packed rkey for peers.
class UcxRegistration {
 public:
  // Throws llmd::Error when the region cannot be registered.
  UcxRegistration(ucp_context_h context, void* base, size_t bytes);
  ~UcxRegistration();
  UcxRegistration(const UcxRegistration&) = delete;
  UcxRegistration& operator=(const UcxRegistration&) = delete;

  const std::string& rkey() const { return rkey_; }

 private:
  ucp_context_h context_;
  ucp_mem_h memh_ = nullptr;
  std::string rkey_;
};

// The UCX_NET_DEVICES value for a transfer host: the interface holding that address ("lo" for
// 127.0.0.1), "all" for a wildcard address or one no interface holds.
std::string ucx_net_devices_for(const std::string& host);

}  // namespace llmd::kv::transfer
