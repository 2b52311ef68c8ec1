#include "kv/transfer/ucx_worker.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstring>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "common/error.hpp"

namespace llmd::kv::transfer {

struct UcxWorkerState {
  explicit UcxWorkerState(asio::any_io_executor ex) : efd(std::move(ex)) {}
  ~UcxWorkerState() {
    error_code ignored;
    efd.close(ignored);  // our duplicate of the worker's fd, before the worker goes
    if (worker) ucp_worker_destroy(worker);
    if (context) ucp_cleanup(context);
  }
  using error_code = boost::system::error_code;

  void drive() {
    for (;;) {
      while (ucp_worker_progress(worker) != 0) {
      }
      if (ucp_worker_arm(worker) != UCS_ERR_BUSY) return;  // UCS_OK: armed; an error: the fd wakes us
    }
  }

  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  std::string address;
  asio::posix::stream_descriptor efd;
  bool stopped = false;
};

namespace {

void check(ucs_status_t s, const char* what) {
  if (s != UCS_OK) fail("UCX: {}: {}", what, ucs_status_string(s));
}

asio::awaitable<void> progress_loop(std::shared_ptr<UcxWorkerState> st) {
  while (!st->stopped) {
    st->drive();
    boost::system::error_code ec;
    co_await st->efd.async_wait(asio::posix::stream_descriptor::wait_read,
                                asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) break;
  }
}

}  // namespace

UcxWorker::UcxWorker(asio::any_io_executor ex, const std::string& net_devices)
    : st_(std::make_shared<UcxWorkerState>(ex)) {
  ucp_config_t* config = nullptr;
  check(ucp_config_read(nullptr, nullptr, &config), "reading the configuration");
  const ucs_status_t modified = ucp_config_modify(config, "NET_DEVICES", net_devices.c_str());
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP;
  const ucs_status_t init = modified == UCS_OK ? ucp_init(&params, config, &st_->context) : modified;
  ucp_config_release(config);
  check(init, "init");

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  check(ucp_worker_create(st_->context, &wp, &st_->worker), "creating a worker");

  ucp_address_t* addr = nullptr;
  size_t len = 0;
  check(ucp_worker_get_address(st_->worker, &addr, &len), "the worker's address");
  st_->address.assign(reinterpret_cast<const char*>(addr), len);
  ucp_worker_release_address(st_->worker, addr);

  int fd = -1;
  check(ucp_worker_get_efd(st_->worker, &fd), "the worker's event fd");
  const int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) fail("UCX: cannot duplicate the worker's event fd: {}", std::strerror(errno));
  st_->efd.assign(dup);
  asio::co_spawn(st_->efd.get_executor(), progress_loop(st_), asio::detached);
}

UcxWorker::~UcxWorker() {
  stop();
}

ucp_context_h UcxWorker::context() const {
  return st_->context;
}

ucp_worker_h UcxWorker::worker() const {
  return st_->worker;
}

const std::string& UcxWorker::address() const {
  return st_->address;
}

void UcxWorker::drive() {
  st_->drive();
}

void UcxWorker::stop() {
  asio::post(st_->efd.get_executor(), [st = st_] {
    st->stopped = true;
    UcxWorkerState::error_code ignored;
    st->efd.cancel(ignored);
  });
}

UcxRegistration::UcxRegistration(ucp_context_h context, void* base, size_t bytes) : context_(context) {
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  mp.address = base;
  mp.length = bytes;
  check(ucp_mem_map(context_, &mp, &memh_), "registering the KV region");
  void* packed = nullptr;
  size_t len = 0;
  if (const ucs_status_t s = ucp_rkey_pack(context_, memh_, &packed, &len); s != UCS_OK) {
    ucp_mem_unmap(context_, memh_);
    check(s, "packing the KV region's rkey");
  }
  rkey_.assign(static_cast<const char*>(packed), len);
  ucp_rkey_buffer_release(packed);
}

UcxRegistration::~UcxRegistration() {
  ucp_mem_unmap(context_, memh_);
}

std::string ucx_net_devices_for(const std::string& host) {
  in6_addr want6{};
  in_addr want4{};
  const bool v4 = ::inet_pton(AF_INET, host.c_str(), &want4) == 1;
  const bool v6 = !v4 && ::inet_pton(AF_INET6, host.c_str(), &want6) == 1;
  if ((v4 && want4.s_addr == htonl(INADDR_ANY)) || (v6 && IN6_IS_ADDR_UNSPECIFIED(&want6)) || (!v4 && !v6))
    return "all";
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return "all";
  std::string name = "all";
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr) continue;
    const bool match =
        (v4 && a->ifa_addr->sa_family == AF_INET &&
         reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr == want4.s_addr) ||
        (v6 && a->ifa_addr->sa_family == AF_INET6 &&
         std::memcmp(&reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr, &want6, sizeof want6) == 0);
    if (match) {
      name = a->ifa_name;
      break;
    }
  }
  ::freeifaddrs(list);
  return name;
}

}  // namespace llmd::kv::transfer
