// The portable half of the matmul: ISA choice, activation preparation and the split of a product
// into tasks for the thread pool. The arithmetic lives in matmul_{scalar,avx2,avx512}.cpp.
#include "engine/cpu/matmul.hpp"

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "common/error.hpp"
#include "engine/cpu/matmul_internal.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace llmd::engine::cpu {

void AlignedBuffer::grow(size_t bytes) {
  if (bytes <= cap_) return;
  // Weights are streamed once per token: on 4 KiB pages a 170 MB model costs ~40k TLB misses per
  // token, so big buffers go on 2 MiB-aligned memory that the kernel may back with huge pages.
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t align = bytes >= kHuge ? kHuge : 64;
  const size_t rounded = (bytes + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (p == nullptr) fail("out of memory allocating {} bytes", rounded);
#if defined(__linux__)
  if (align == kHuge) madvise(p, rounded, MADV_HUGEPAGE);  // advisory: failure only costs speed
#endif
  ptr_.reset(p);
  cap_ = rounded;
}

Isa best_supported_isa() {
#if defined(__x86_64__)
  static const Isa isa = [] {
    __builtin_cpu_init();
    // F16C comes with every AVX2 CPU (Haswell, Zen) and GCC 12 cannot query it by name.
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return Isa::kScalar;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni"))
      return Isa::kAvx512;
    return Isa::kAvx2;
  }();
  return isa;
#else
  return Isa::kScalar;
#endif
}

Isa detect_isa() {
  // LLMD_ISA can only lower the level (for tests and comparisons): asking for more than the CPU has
  // would crash on the first unsupported instruction.
  static const Isa isa = [] {
    Isa best = best_supported_isa();
    if (const char* env = std::getenv("LLMD_ISA")) {
      const std::string_view want(env);
      Isa asked = best;
      if (want == "scalar")
        asked = Isa::kScalar;
      else if (want == "avx2")
        asked = Isa::kAvx2;
      else if (want == "avx512")
        asked = Isa::kAvx512;
      else if (!want.empty())
        fail("LLMD_ISA={} is not one of scalar, avx2, avx512", want);
      best = std::min(best, asked);
    }
    return best;
  }();
  return isa;
}

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

const KernelSet& kernels_for(Isa isa) {
  if (isa > best_supported_isa()) fail("this CPU does not support the {} kernels", isa_name(isa));
  switch (isa) {
    case Isa::kAvx512:
      return avx512_kernels();
    case Isa::kAvx2:
      return avx2_kernels();
    default:
      return scalar_kernels();
  }
}

// ---- MatmulInput ----

MatmulInput::MatmulInput() : impl_(std::make_unique<Impl>()) {}
MatmulInput::MatmulInput(MatmulInput&&) noexcept = default;
MatmulInput& MatmulInput::operator=(MatmulInput&&) noexcept = default;
MatmulInput::~MatmulInput() = default;

int64_t MatmulInput::n_tokens() const {
  return impl_->n_tokens;
}
int64_t MatmulInput::cols() const {
  return impl_->cols;
}

void MatmulInput::prepare(const float* x, int64_t n_tokens, int64_t cols, int64_t ld, bool int8,
                          ThreadPool& pool) {
  Impl& s = *impl_;
  if (ld < cols) fail("matmul input: row stride {} < cols {}", ld, cols);
  s.x = x;
  s.n_tokens = n_tokens;
  s.cols = cols;
  s.ld = ld;
  s.int8 = int8;
  if (!int8 || n_tokens == 0) return;
  if (cols % 32 != 0) fail("matmul input: {} columns cannot be quantized in blocks of 32", cols);
  const int64_t nb = cols / 32;
  s.q.grow(n_tokens * cols);
  s.d.grow(n_tokens * nb * sizeof(float));
  s.corr.grow(n_tokens * nb * sizeof(int32_t));
  const QuantizeKernel quantize = kernels_for(detect_isa()).quantize;
  // A decode-sized input quantizes in well under a microsecond: not worth waking the pool for.
  constexpr int64_t kParallelElems = 1 << 15;
  if (pool.size() == 1 || n_tokens * cols < kParallelElems) {
    quantize(x, ld, 0, n_tokens, s);
    return;
  }
  const int64_t chunk = std::max<int64_t>(1, kParallelElems / 4 / cols);
  pool.parallel_for((n_tokens + chunk - 1) / chunk, [&](int64_t task, int) {
    quantize(x, ld, task * chunk, std::min(n_tokens, (task + 1) * chunk), s);
  });
}

// ---- matmul ----

void matmul_isa(const PackedMatrix& w, const MatmulInput& x, float* y, int64_t ldy, ThreadPool& pool,
                Isa isa) {
  const PackedMatrix::Impl& W = w.impl();
  const MatmulInput::Impl& X = x.impl();
  if (X.cols != W.cols) fail("matmul: input has {} columns, weights {}", X.cols, W.cols);
  if (ldy < W.rows) fail("matmul: output row stride {} < rows {}", ldy, W.rows);
  const int64_t n_tokens = X.n_tokens;
  if (n_tokens == 0 || W.rows == 0) return;
  const KernelSet& ks = kernels_for(isa);
  RangeKernel kernel = nullptr;
  switch (W.kind) {
    case PackKind::kInt8:
      if (!X.int8)
        fail("matmul: {} weights need an input prepared with int8 = true", model::ggml_type_name(W.type));
      kernel = ks.int8;
      break;
    case PackKind::kF32:
      kernel = ks.f32;
      break;
    case PackKind::kF16:
      kernel = ks.f16;
      break;
    case PackKind::kBF16:
      kernel = ks.bf16;
      break;
  }

  // Tasks are (row groups) x (tokens) rectangles. A decode-sized input stays in one token chunk
  // so that each weight byte is streamed from memory once; a prompt is cut into chunks whose
  // activations stay in L2 while a task sweeps its rows. Rows are split finely enough that the
  // pool's dynamic hand-out evens out threads slowed by anything else running on the machine.
  const int n_threads = pool.size();
  const int64_t G = W.groups;
  constexpr int64_t kTokenChunk = 96;  // a multiple of every kernel's token tile
  const int64_t tc = n_tokens <= 32 ? n_tokens : kTokenChunk;
  const int64_t n_tc = (n_tokens + tc - 1) / tc;
  const int64_t unit = ks.int8_tile_groups;
  const int64_t want_tasks = n_threads == 1 ? 1 : 4 * n_threads;
  const int64_t want_rc = std::max<int64_t>(1, (want_tasks + n_tc - 1) / n_tc);
  int64_t rc = (G + want_rc - 1) / want_rc;
  rc = std::max(unit, (rc + unit - 1) / unit * unit);
  const int64_t n_rc = (G + rc - 1) / rc;

  auto task = [&](int64_t i, int) {
    const int64_t ti = i / n_rc, ri = i % n_rc;
    kernel(W, X, y, ldy, ri * rc, std::min(G, (ri + 1) * rc), ti * tc, std::min(n_tokens, (ti + 1) * tc));
  };
  pool.parallel_for(n_tc * n_rc, task);
}

void matmul(const PackedMatrix& w, const MatmulInput& x, float* y, int64_t ldy, ThreadPool& pool) {
  matmul_isa(w, x, y, ldy, pool, detect_isa());
}

}  // namespace llmd::engine::cpu
