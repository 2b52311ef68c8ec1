// KV transfer over tcp, shm and ucx against the plain copies they ride on, in one process.
//
//   kv_transfer_bench [runs=5] [batch_blocks=32]
//
// Blocks of the 160m model's shape (12 layers x K,V = 24 segments of 24 KiB = 576 KiB per block,
// f16, 16 tokens), 456 of them (256.5 MiB), served by a TransferServer on its own thread and pulled
// by a TcpBackend on this one as READs of batch_blocks blocks, all posted at once on one connection
// (pipelined), with keys and checksums verified. The anchor is the same bytes through a plain socket
// pair on loopback: one thread writing the source arena in write_batch_bytes chunks, one reading into
// the destination arena a block's worth at a time, with the same 4 MiB socket buffers and
// TCP_NODELAY. Both arenas are touched before timing. tcp and plain runs alternate (a load change on
// the machine hits both alike); each figure is the median of `runs` runs, the ratio the median of
// the runs' ratios. The single-block latency is the median of 200 one-block READs on a prepared
// peer. The target: tcp >= 70% of the plain copy.
//
// shm: the source arena is a SharedArena offered by the same server; a ShmBackend maps it read-only
// (prepared by engine id, straight to the Unix socket) and pulls the same READs as LEASE -> copy ->
// verify -> DONE. Its anchor is one memcpy of the same 256 MiB between the same two arenas; shm,
// memcpy, tcp and the plain socket copy alternate within each run. The target: shm >= 50%
// of memcpy.
//
// ucx: the same server offers ucx; a UcxBackend reads the same batches as LEASE -> one-sided gets
// (one per run of consecutive blocks in each segment) -> verify -> DONE, over whatever transport UCX
// picks on this host (UCX_TLS narrows it, e.g. UCX_TLS=tcp for the network path). The issue sets no
// target; it is reported beside tcp and memcpy.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "common/shared_arena.hpp"
#include "kv/transfer/layout.hpp"
#include "kv/transfer/pin_registry.hpp"
#include "kv/transfer/shm_backend.hpp"
#include "kv/transfer/tcp_backend.hpp"
#include "kv/transfer/transfer_server.hpp"
#include "kv/transfer/ucx_backend.hpp"

using namespace llmd;
using namespace llmd::kv::transfer;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int32_t kBlocks = 456;

KvLayout layout_160m() {
  const uint64_t seg = 16 * 768 * 2;  // block_size x kv_dim x f16
  return {.n_segments = 24,
          .segment_bytes = seg,
          .segment_stride = kBlocks * seg,
          .n_blocks = kBlocks,
          .block_size = 16,
          .dtype = 0};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void fill(std::span<std::byte> m, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i + 8 <= m.size(); i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::memcpy(m.data() + i, &x, 8);
  }
}

// Runs `a` on `io` to completion.
template <class T>
T run(asio::io_context& io, asio::awaitable<T> a) {
  std::optional<T> out;
  asio::co_spawn(io, std::move(a), [&](std::exception_ptr e, T v) {
    if (e) std::rethrow_exception(e);
    out = std::move(v);
  });
  io.restart();
  while (!out) io.run_one();
  return std::move(*out);
}

// All READs posted at once, then awaited.
asio::awaitable<bool> pull_all(TransferBackend& b, Peer& peer, const std::string& id,
                               const std::vector<std::vector<BlockPair>>& batches) {
  auto ex = co_await asio::this_coro::executor;
  int left = static_cast<int>(batches.size());
  bool ok = true;
  asio::steady_timer all_done(ex, asio::steady_timer::time_point::max());
  for (const auto& batch : batches)
    asio::co_spawn(ex, b.read(peer, id, batch), [&](std::exception_ptr, std::expected<void, XferError> r) {
      if (!r) {
        std::fprintf(stderr, "read failed: %s\n", std::string(to_string(r.error())).c_str());
        ok = false;
      }
      if (--left == 0) all_done.cancel();
    });
  boost::system::error_code ec;
  while (left > 0) co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  co_return ok;
}

void set_opts(int fd, int buf) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
}

// The anchor: write(2) loop -> loopback -> read(2) loop; returns GB/s.
double plain_copy(const std::byte* src, std::byte* dst, uint64_t bytes, uint64_t write_chunk,
                  uint64_t read_chunk, int buf) {
  const int ls = socket(AF_INET, SOCK_STREAM, 0);
  set_opts(ls, buf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) || listen(ls, 1) ||
      getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len)) {
    std::perror("plain copy: listen");
    std::exit(1);
  }
  const int cs = socket(AF_INET, SOCK_STREAM, 0);
  set_opts(cs, buf);
  if (connect(cs, reinterpret_cast<sockaddr*>(&a), sizeof a)) {
    std::perror("plain copy: connect");
    std::exit(1);
  }
  const int ss = accept(ls, nullptr, nullptr);
  const auto t0 = Clock::now();
  std::thread writer([&] {
    for (uint64_t off = 0; off < bytes;) {
      const ssize_t n = write(ss, src + off, std::min(write_chunk, bytes - off));
      if (n <= 0) std::abort();
      off += n;
    }
  });
  for (uint64_t off = 0; off < bytes;) {
    const ssize_t n = read(cs, dst + off, std::min(read_chunk, bytes - off));
    if (n <= 0) std::abort();
    off += n;
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  writer.join();
  close(ss);
  close(cs);
  close(ls);
  return bytes / s / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const int batch = argc > 2 ? std::clamp(std::atoi(argv[2]), 1, kBlocks) : 32;
  const KvLayout l = layout_160m();
  SharedArena src_arena = SharedArena::create(l.arena_bytes());  // shareable, as shm needs
  std::span<std::byte> src = src_arena.bytes();
  std::vector<std::byte> dst(l.arena_bytes());
  fill(src, 1);
  fill(dst, 2);  // resident, as an engine's arena is
  const uint64_t total = uint64_t{kBlocks} * l.block_bytes();

  TransferConfig cfg;
  cfg.secret = "bench";
  PinRegistry pins;
  std::vector<int32_t> ids(kBlocks);
  std::vector<BlockHash> keys(kBlocks);
  for (int32_t b = 0; b < kBlocks; ++b) ids[b] = b, keys[b] = {static_cast<uint64_t>(b), 7};
  pins.pin("bench", ids, keys);

  asio::io_context server_io, client_io;
  auto work = asio::make_work_guard(server_io);
  TransferServer server(server_io.get_executor(), cfg, {l, src.data()}, "160m", pins);
  server.offer_shm(src_arena);
  server.offer_ucx();
  server.start();
  std::thread server_thread([&] { server_io.run(); });

  TcpBackend backend(client_io.get_executor(), cfg, {l, dst.data()}, "160m");
  auto peer = run(client_io, backend.prepare({server.engine_id(), "127.0.0.1", server.port()}));
  if (!peer) {
    std::fprintf(stderr, "prepare failed: %s\n", std::string(to_string(peer.error())).c_str());
    return 1;
  }
  ShmBackend shm_backend(client_io.get_executor(), cfg, {l, dst.data()}, "160m");
  auto shm_peer = run(client_io, shm_backend.prepare({server.engine_id(), "127.0.0.1", server.port()}));
  if (!shm_peer) {
    std::fprintf(stderr, "shm prepare failed: %s\n", std::string(to_string(shm_peer.error())).c_str());
    return 1;
  }
  UcxBackend ucx_backend(client_io.get_executor(), cfg, {l, dst.data()}, "160m");
  auto ucx_peer = run(client_io, ucx_backend.prepare({server.engine_id(), "127.0.0.1", server.port()}));
  if (!ucx_peer) {
    std::fprintf(stderr, "ucx prepare failed: %s\n", std::string(to_string(ucx_peer.error())).c_str());
    return 1;
  }
  std::vector<std::vector<BlockPair>> batches;
  for (int32_t b = 0; b < kBlocks; ++b) {
    if (b % batch == 0) batches.emplace_back();
    batches.back().push_back({b, b, keys[b]});
  }
  const std::string id = "bench";

  // Warm-up (the shm mapping's pages are faulted in once per peer), and the check that bytes arrive.
  for (auto [b, p] : {std::pair<TransferBackend*, Peer*>{&backend, peer->get()},
                      {&shm_backend, shm_peer->get()},
                      {&ucx_backend, ucx_peer->get()}}) {
    fill(dst, 2);
    run(client_io, pull_all(*b, *p, id, batches));
    for (int32_t blk = 0; blk < kBlocks; ++blk)
      for (uint32_t s = 0; s < l.n_segments; ++s)
        if (std::memcmp(src.data() + l.offset(blk, s), dst.data() + l.offset(blk, s), l.segment_bytes) != 0) {
          std::fprintf(stderr, "%s: block %d differs\n", std::string(b->name()).c_str(), blk);
          return 1;
        }
  }

  const auto gbps = [total](Clock::time_point t0) {
    return total / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9;
  };
  std::vector<double> tcp, plain, ratio, shm, mem, shm_ratio, ucx;
  for (int r = 0; r < runs; ++r) {
    auto t0 = Clock::now();
    if (!run(client_io, pull_all(backend, **peer, id, batches))) return 1;
    tcp.push_back(gbps(t0));
    plain.push_back(plain_copy(src.data(), dst.data(), total, cfg.write_batch_bytes, l.block_bytes(),
                               cfg.socket_buffer_bytes));
    ratio.push_back(tcp.back() / plain.back());
    t0 = Clock::now();
    if (!run(client_io, pull_all(shm_backend, **shm_peer, id, batches))) return 1;
    shm.push_back(gbps(t0));
    t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), total);
    mem.push_back(gbps(t0));
    shm_ratio.push_back(shm.back() / mem.back());
    t0 = Clock::now();
    if (!run(client_io, pull_all(ucx_backend, **ucx_peer, id, batches))) return 1;
    ucx.push_back(gbps(t0));
  }

  const std::vector<std::vector<BlockPair>> one = {{{17, 17, keys[17]}}};
  const auto one_block_us = [&](TransferBackend& b, Peer& peer) {
    std::vector<double> us;
    for (int i = 0; i < 200; ++i) {
      const auto t0 = Clock::now();
      if (!run(client_io, pull_all(b, peer, id, one))) std::exit(1);
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    return median(us);
  };
  const double one_us = one_block_us(backend, **peer), shm_one_us = one_block_us(shm_backend, **shm_peer),
               ucx_one_us = one_block_us(ucx_backend, **ucx_peer);

  const double t = median(tcp), p = median(plain);
  std::printf("kv_transfer_bench: %d blocks x %llu KiB (%.1f MiB), READs of %d blocks, median of %d runs\n",
              kBlocks, static_cast<unsigned long long>(l.block_bytes() >> 10), total / 1048576.0, batch,
              runs);
  std::printf("tcp backend        %6.2f GB/s\n", t);
  std::printf("plain socket copy  %6.2f GB/s\n", p);
  std::printf("ratio              %6.1f %%  (median of the per-run ratios; target >= 70 %%)\n",
              100 * median(ratio));
  std::printf("one block (576 KiB) %6.0f us median of 200\n", one_us);
  std::printf("shm backend        %6.2f GB/s\n", median(shm));
  std::printf("memcpy             %6.2f GB/s\n", median(mem));
  std::printf("ratio              %6.1f %%  (median of the per-run ratios; target >= 50 %%)\n",
              100 * median(shm_ratio));
  std::printf("one block (576 KiB) %6.0f us median of 200 (shm)\n", shm_one_us);
  std::printf("ucx backend        %6.2f GB/s\n", median(ucx));
  std::printf("one block (576 KiB) %6.0f us median of 200 (ucx)\n", ucx_one_us);

  peer->reset();
  shm_peer->reset();
  ucx_peer->reset();
  ucx_backend.stop();
  server.stop();
  work.reset();
  server_thread.join();
  return 0;
}
