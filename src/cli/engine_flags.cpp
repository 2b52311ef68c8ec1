#include "cli/engine_flags.hpp"

#include "common/error.hpp"

namespace llmd::cli {

void EngineFlags::add_to(CLI::App& cmd) {
  cmd.add_option("-m,--model", model, "GGUF model file")->required();
  cmd.add_option("-t,--threads", backend.threads, "Compute threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--max-seq-len", backend.max_seq_len,
                 "Longest sequence in tokens (0: the model's context, capped at 4096)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--max-num-batched-tokens", backend.max_batch_tokens, "Tokens in one forward step")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--block-size", backend.kv.block_size, "KV cache block size in tokens (8, 16, 32, 64)");
  cmd.add_option("--num-kv-blocks", backend.kv.n_blocks,
                 "KV cache blocks (0: automatic; serve sizes it to 2 GiB at most)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--kv-cache-dtype", kv_dtype, "KV cache element type: f16 or f32")
      ->check(CLI::IsMember({"f16", "f32"}));
}

engine::BackendConfig EngineFlags::resolve() const {
  engine::BackendConfig c = backend;
  if (kv_dtype == "f16")
    c.kv.dtype = engine::KvDtype::kF16;
  else if (kv_dtype == "f32")
    c.kv.dtype = engine::KvDtype::kF32;
  else
    fail("--kv-cache-dtype must be f16 or f32, got '{}'", kv_dtype);
  return c;
}

}  // namespace llmd::cli
